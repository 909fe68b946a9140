// The TOML configuration -> the hypervisor's VmSettings. lib/hypervisor
// reads no configuration; the sandbox builds its settings here, and fills
// the per-pod fields (id, state dir, shared dir, extra kernel parameters)
// itself.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "lib/base/result.h"
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

// Pod annotations that set a pod VM's size (they reach the sandbox's spec
// when containerd's runtime entry has pod_annotations = ["io.cask.*"]).
inline constexpr std::string_view kVcpusAnnotation = "io.cask.vcpus";
inline constexpr std::string_view kMemoryMibAnnotation = "io.cask.memory_mib";
// What containerd's CRI plugin puts in the sandbox's spec when the pod
// config carries the pod's total resources (containerd 1.6 with a kubelet
// that does not send them: absent).
inline constexpr std::string_view kSandboxCpuQuotaAnnotation = "io.kubernetes.cri.sandbox-cpu-quota";
inline constexpr std::string_view kSandboxCpuPeriodAnnotation = "io.kubernetes.cri.sandbox-cpu-period";
inline constexpr std::string_view kSandboxMemoryAnnotation = "io.kubernetes.cri.sandbox-memory";

struct PodVmSize {
  uint32_t vcpus = 0;
  uint32_t memory_mib = 0;
  std::string reason;  // for the log: "configuration", "pod limits", "annotations"
};

// The size of a pod's VM, from the sandbox spec's annotations:
//   - start from hypervisor.vcpus / memory_mib (the VM's own overhead: the
//     guest kernel, the agent, the page cache);
//   - add the pod's limits known when the sandbox is created (the
//     sandbox-cpu-quota/period and sandbox-memory annotations: the CPU
//     quota rounded up to whole vCPUs, the memory limit rounded up to MiB),
//     capped at max_vcpus / max_memory_mib;
//   - io.cask.vcpus / io.cask.memory_mib (decimal integers) then replace
//     the result. An override that is not a number, or is outside
//     [1, max_vcpus] / [64, max_memory_mib], is INVALID_ARGUMENT naming the
//     annotation and the bounds: the sandbox is not created.
// Malformed pod-limit annotations (set by containerd, not by the user) are
// ignored.
Result<PodVmSize> SizePodVm(const config::HypervisorConfig& h, const std::map<std::string, std::string>& annotations);

}  // namespace cask::sandbox
