#include "lib/sandbox/vm_settings.h"

#include <pwd.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <vector>

namespace cask::sandbox {
namespace {

bool UserExists(const char* name) {
  passwd pw{}, *res = nullptr;
  std::vector<char> buf(16384);
  return ::getpwnam_r(name, &pw, buf.data(), buf.size(), &res) == 0 && res != nullptr;
}

hypervisor::Accel ToAccel(config::Accel a) {
  switch (a) {
    case config::Accel::kKvm: return hypervisor::Accel::kKvm;
    case config::Accel::kTcg: return hypervisor::Accel::kTcg;
    case config::Accel::kAuto: break;
  }
  return hypervisor::Accel::kAuto;
}

hypervisor::ChannelRequest ToChannel(config::AgentChannel c) {
  switch (c) {
    case config::AgentChannel::kVsock: return hypervisor::ChannelRequest::kVsock;
    case config::AgentChannel::kSerial: return hypervisor::ChannelRequest::kSerial;
    case config::AgentChannel::kAuto: break;
  }
  return hypervisor::ChannelRequest::kAuto;
}

}  // namespace

std::string ResolveRunas(const std::string& word, bool nobody_exists) {
  if (word == "none") return "";
  if (word == "auto") return nobody_exists ? "nobody" : "";
  return word;
}

hypervisor::VmSettings VmSettingsFromConfig(const config::Config& c) {
  const config::HypervisorConfig& h = c.hypervisor;
  hypervisor::VmSettings s;
  s.qemu_path = h.path;
  s.kernel = h.kernel;
  s.initrd = h.initrd;
  s.machine_type = h.machine_type;
  s.accel = ToAccel(h.accel);
  s.vcpus = h.vcpus;
  s.memory_mib = h.memory_mib;
  s.kernel_params = h.kernel_params;
  s.virtiofsd_path = h.virtiofsd_path;
  s.virtiofs_cache = h.virtiofs_cache;
  s.tcg_tb_size_mib = h.tcg_tb_size_mib;
  s.free_page_reporting = h.free_page_reporting;
  s.release_boot_files = h.release_boot_files;
  s.channel = ToChannel(c.agent.channel);
  s.debug = c.runtime.debug;
  s.runas = ResolveRunas(h.runas, h.runas == "auto" && UserExists("nobody"));
  s.cgroup.enabled = c.runtime.sandbox_cgroup;
  s.cgroup.parent = c.runtime.cgroup_parent;
  s.cgroup.include_caller = c.runtime.cgroup_shim;
  s.cgroup.memory_overhead_mib = c.runtime.cgroup_memory_overhead_mib;
  s.cgroup.cpu_quota_cores = h.vcpus + 1;
  s.cgroup.pids_max = c.runtime.cgroup_pids_max;
  return s;
}

namespace {

// A decimal integer that fills all of `s`, or nullopt.
std::optional<uint64_t> ParseU64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int64_t> ParseI64(std::string_view s) {
  int64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

const std::string* Find(const std::map<std::string, std::string>& m, std::string_view key) {
  auto it = m.find(std::string(key));
  return it == m.end() ? nullptr : &it->second;
}

Result<uint32_t> Override(const std::map<std::string, std::string>& a, std::string_view key, uint32_t lo,
                          uint32_t hi, uint32_t current) {
  const std::string* v = Find(a, key);
  if (!v) return current;
  auto n = ParseU64(*v);
  if (!n || *n < lo || *n > hi)
    return Error::InvalidArgument("annotation " + std::string(key) + "=\"" + BoundedString(*v, 64) +
                                  "\": must be a whole number between " + std::to_string(lo) + " and " +
                                  std::to_string(hi) + " (hypervisor." +
                                  (key == kVcpusAnnotation ? "max_vcpus" : "max_memory_mib") +
                                  " in the cask configuration)");
  return static_cast<uint32_t>(*n);
}

}  // namespace

Result<PodVmSize> SizePodVm(const config::HypervisorConfig& h, const std::map<std::string, std::string>& a) {
  PodVmSize s{h.vcpus, h.memory_mib, "configuration"};
  const uint32_t max_vcpus = std::max(h.max_vcpus, h.vcpus);
  const uint32_t max_mem = std::max(h.max_memory_mib, h.memory_mib);
  // The pod's limits, when containerd passed them.
  const std::string* quota = Find(a, kSandboxCpuQuotaAnnotation);
  const std::string* period = Find(a, kSandboxCpuPeriodAnnotation);
  if (quota && period) {
    auto q = ParseI64(*quota);
    auto p = ParseI64(*period);
    if (q && p && *q > 0 && *p > 0) {
      uint64_t cpus = (static_cast<uint64_t>(*q) + static_cast<uint64_t>(*p) - 1) / static_cast<uint64_t>(*p);
      s.vcpus = static_cast<uint32_t>(std::min<uint64_t>(max_vcpus, s.vcpus + cpus));
      s.reason = "pod limits";
    }
  }
  if (const std::string* mem = Find(a, kSandboxMemoryAnnotation)) {
    auto b = ParseI64(*mem);
    if (b && *b > 0) {
      uint64_t mib = (static_cast<uint64_t>(*b) + (1u << 20) - 1) >> 20;
      s.memory_mib = static_cast<uint32_t>(std::min<uint64_t>(max_mem, s.memory_mib + mib));
      s.reason = "pod limits";
    }
  }
  CASK_ASSIGN_OR_RETURN(uint32_t v, Override(a, kVcpusAnnotation, config::kMinVcpus, max_vcpus, s.vcpus));
  CASK_ASSIGN_OR_RETURN(uint32_t m, Override(a, kMemoryMibAnnotation, config::kMinMemoryMib, max_mem, s.memory_mib));
  if (v != s.vcpus || m != s.memory_mib || Find(a, kVcpusAnnotation) || Find(a, kMemoryMibAnnotation))
    s.reason = "annotations";
  s.vcpus = v;
  s.memory_mib = m;
  return s;
}

}  // namespace cask::sandbox
