// Device cgroup for cgroup v2: the spec's device rules compiled to a
// BPF_CGROUP_DEVICE program, loaded with bpf(BPF_PROG_LOAD) and attached to
// the container's cgroup with bpf(BPF_PROG_ATTACH), as runc and crun do. No
// libbpf: the program is a handful of instructions emitted here.
//
// Rules. The effective list is, in order: linux.resources.devices, then an
// "allow rwm" rule per linux.devices entry (the spec creates those nodes, so
// it means them to be usable), then the default devices every container
// gets (null 1:3, zero 1:5, full 1:7, random 1:8, urandom 1:9, tty 5:0,
// ptmx 5:2, and the pty slaves 136:*, all char rwm). As in the OCI model the
// last matching rule decides; nothing matching is denied. So a spec that
// starts with "deny all" and allows nothing else gets only the defaults, and
// a privileged container (an "allow all" rule, e.g. {allow, type a, rwm})
// gets everything.
//
// The builder is pure and tested alone (with a small interpreter in the
// test); loading and attaching need CAP_SYS_ADMIN (or CAP_BPF) and a kernel
// with CONFIG_CGROUP_BPF.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/oci/spec.h"

namespace cask::container {

// One rule in kernel terms. `type` is 0 for any, else BPF_DEVCG_DEV_CHAR or
// BPF_DEVCG_DEV_BLOCK; major/minor -1 is any; `access` is a mask of
// BPF_DEVCG_ACC_MKNOD|READ|WRITE.
struct DeviceRule {
  bool allow = false;
  uint32_t type = 0;
  int64_t major = -1, minor = -1;
  uint32_t access = 0;

  bool operator==(const DeviceRule&) const = default;
};

// The effective rule list of a spec (see above). A bad type ("x"), access
// letter, or a negative major/minor other than -1 is INVALID_ARGUMENT.
Result<std::vector<DeviceRule>> EffectiveDeviceRules(const oci::Spec& spec);

// The default devices alone, in rule form.
std::vector<DeviceRule> DefaultDeviceRules();

// True if `rules` allow every access to every device (privileged).
bool AllowsAll(const std::vector<DeviceRule>& rules);

// The program: reads the access and device from the bpf_cgroup_dev_ctx,
// tests the rules from the last to the first, returns 1 (allow) for the
// first that matches, 0 if none does.
std::vector<bpf_insn> BuildDeviceProgram(const std::vector<DeviceRule>& rules);

// bpf(BPF_PROG_LOAD) of a BPF_PROG_TYPE_CGROUP_DEVICE program. The error
// carries the verifier's log (bounded) when the kernel rejects it.
Result<UniqueFd> LoadDeviceProgram(const std::vector<bpf_insn>& insns);

// Attaches `prog` to the cgroup directory `cgroup_dir` (BPF_F_ALLOW_MULTI:
// every program on the path to the root must allow an access).
Status AttachDeviceProgram(int cgroup_dir, int prog);
// Detaches `prog` from `cgroup_dir`.
Status DetachDeviceProgram(int cgroup_dir, int prog);

// EffectiveDeviceRules + Build + Load + Attach to the cgroup at `cgroup_path`.
// Returns the program fd (the attachment holds its own reference; the fd is
// kept only to detach it on Update).
Result<UniqueFd> ApplyDeviceRules(const std::string& cgroup_path, const std::vector<DeviceRule>& rules);

}  // namespace cask::container
