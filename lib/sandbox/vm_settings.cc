#include "lib/sandbox/vm_settings.h"

#include <pwd.h>

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

}  // namespace cask::sandbox
