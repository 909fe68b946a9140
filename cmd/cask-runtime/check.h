// `cask-runtime check`: can this host run cask? A table of named items.
#pragma once

#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/hypervisor/host_cgroup.h"
#include "lib/hypervisor/hypervisor.h"

namespace cask::runtime {

struct CheckItem {
  enum class Result { kOk, kFail, kInfo };
  std::string name;
  bool required = true;  // a failed required item fails the command
  Result result = Result::kOk;
  std::string detail;
};

// Every item for `cfg` on a host described by `probe`. Reads files, runs
// nothing but `<qemu> --version`.
std::vector<CheckItem> RunHostChecks(const config::Config& cfg, const hypervisor::HostProbe& probe);

// "cgroup": which layout the pod cgroups would use (v1 memory/cpu/pids, or
// v2), and whether the state allows creating them (root). Required only
// when runtime.sandbox_cgroup is on.
CheckItem CgroupItem(const config::Config& cfg, const hypervisor::CgroupLayout& layout, bool root);
// "runas": the user QEMU drops to (hypervisor.runas resolved), or that it
// stays root; FAIL for a named user that does not exist.
CheckItem RunasItem(const config::Config& cfg);

// "containerd": whether containerd's config at `containerd_config` (and
// its imports) gives the CRI plugin the cask runtime handler. Not required:
// cask also runs without Kubernetes.
CheckItem ContainerdItem(const std::string& containerd_config);

// "pool": the pool of ready VMs (its socket, size, ready count), or that
// pods boot cold. Not required.
CheckItem PoolItem(const config::Config& cfg);

// "CHECK  RESULT  DETAIL" table, one line per item.
std::string RenderChecks(const std::vector<CheckItem>& items);
bool AllRequiredPass(const std::vector<CheckItem>& items);

// The subcommand: loads the config (`config_path` or the default), checks
// the host and containerd's config (`containerd_config`), prints the table, returns the exit status (0 when every required item passes).
int Check(const std::string& config_path, const std::string& containerd_config);

}  // namespace cask::runtime
