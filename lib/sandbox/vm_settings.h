// The TOML configuration -> the hypervisor's VmSettings. lib/hypervisor
// reads no configuration; the sandbox builds its settings here, and fills
// the per-pod fields (id, state dir, shared dir, extra kernel parameters)
// itself.
#pragma once

#include "lib/config/config.h"
#include "lib/hypervisor/hypervisor.h"

namespace cask::sandbox {

// hypervisor.runas "auto" -> "nobody" if `nobody_exists`, else "" (root);
// "none" -> ""; anything else as it is (Start validates it).
std::string ResolveRunas(const std::string& word, bool nobody_exists);

// Every setting that comes from the configuration. The pod's cgroup gets
// a CPU limit of vcpus + 1 cores (the vCPU threads plus QEMU's and
// virtiofsd's own work).
hypervisor::VmSettings VmSettingsFromConfig(const config::Config& c);

}  // namespace cask::sandbox
