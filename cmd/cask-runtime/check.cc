#include "cmd/cask-runtime/check.h"

#include "lib/pool/pooled_hypervisor.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "cmd/cask-runtime/install.h"
#include "lib/sandbox/vm_settings.h"

namespace cask::runtime {

namespace {

using R = CheckItem::Result;

CheckItem FileItem(std::string name, const std::string& key, const std::string& path, bool executable) {
  CheckItem it{std::move(name), true, R::kOk, path};
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    it.result = R::kFail;
    it.detail = key + " = " + path + ": " + std::strerror(errno);
    return it;
  }
  if (!S_ISREG(st.st_mode)) {
    it.result = R::kFail;
    it.detail = key + " = " + path + ": not a regular file";
    return it;
  }
  if (::access(path.c_str(), executable ? X_OK : R_OK) != 0) {
    it.result = R::kFail;
    it.detail = key + " = " + path + ": " + (executable ? "not executable: " : "not readable: ") + std::strerror(errno);
    return it;
  }
  it.detail = path + " (" + std::to_string(st.st_size / 1024) + " KiB)";
  return it;
}

// First line of `<qemu> --version`, or empty.
std::string QemuVersion(const std::string& qemu) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "";
  UniqueFd r(p[0]), w(p[1]);
  SpawnOptions so;
  so.stdout_fd = w.get();
  auto child = Spawn({qemu, "--version"}, so);
  w.Reset();
  if (!child.ok()) return "";
  std::string out;
  char buf[512];
  ssize_t n;
  while (out.size() < 4096 && (n = ::read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  (void)child->WaitFor(std::chrono::milliseconds(5000));
  auto eol = out.find('\n');
  return out.substr(0, eol);
}

// The nearest existing ancestor of `path` (or itself).
std::string ExistingAncestor(std::string path) {
  while (!PathExists(path) && path != "/") path = Dirname(path);
  return path;
}

}  // namespace

std::vector<CheckItem> RunHostChecks(const config::Config& cfg, const hypervisor::HostProbe& probe) {
  std::vector<CheckItem> items;
  const auto& hv = cfg.hypervisor;
  items.push_back({"config", true, R::kOk, cfg.source});

  CheckItem qemu = FileItem("qemu", "hypervisor.path", hv.path, true);
  if (qemu.result == R::kOk) {
    std::string v = QemuVersion(hv.path);
    if (v.empty()) {
      qemu.result = R::kFail;
      qemu.detail = hv.path + ": `--version` failed";
    } else {
      qemu.detail = hv.path + ": " + v;
    }
  }
  items.push_back(std::move(qemu));
  items.push_back(FileItem("kernel", "hypervisor.kernel", hv.kernel, false));
  items.push_back(FileItem("initrd", "hypervisor.initrd", hv.initrd, false));
  items.push_back(FileItem("virtiofsd", "hypervisor.virtiofsd_path", hv.virtiofsd_path, true));

  // Acceleration: KVM when usable, TCG (slow, but works) otherwise.
  const hypervisor::VmSettings vs = sandbox::VmSettingsFromConfig(cfg);
  hypervisor::Accel accel = hypervisor::ResolveAccel(vs.accel, probe);
  CheckItem kvm{"kvm", hv.accel == config::Accel::kKvm, R::kInfo, ""};
  if (probe.kvm_usable && probe.cpu_has_virt) {
    kvm.result = R::kOk;
    kvm.detail = "/dev/kvm usable";
  } else {
    kvm.result = hv.accel == config::Accel::kKvm ? R::kFail : R::kInfo;
    kvm.detail = std::string(probe.kvm_usable ? "no vmx/svm in /proc/cpuinfo" : "/dev/kvm not usable");
  }
  kvm.detail += "; accel = " + std::string(hypervisor::AccelWord(accel)) + " (hypervisor.accel = " +
                std::string(config::AccelName(hv.accel)) + ")";
  items.push_back(std::move(kvm));

  hypervisor::Channel ch = hypervisor::ResolveChannel(vs.channel, probe);
  CheckItem vsock{"vhost-vsock", cfg.agent.channel == config::AgentChannel::kVsock, R::kInfo, ""};
  if (probe.vhost_vsock) {
    vsock.result = R::kOk;
    vsock.detail = "/dev/vhost-vsock present";
  } else {
    vsock.result = cfg.agent.channel == config::AgentChannel::kVsock ? R::kFail : R::kInfo;
    vsock.detail = "/dev/vhost-vsock absent";
  }
  vsock.detail += "; agent channel = " + std::string(hypervisor::ChannelWord(ch)) + " (agent.channel = " +
                  std::string(config::ChannelName(cfg.agent.channel)) + ")";
  items.push_back(std::move(vsock));

  CheckItem state{"state_dir", true, R::kOk, cfg.runtime.state_dir};
  std::string anc = ExistingAncestor(cfg.runtime.state_dir);
  struct stat st;
  if (::stat(anc.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || ::access(anc.c_str(), W_OK | X_OK) != 0) {
    state.result = R::kFail;
    state.detail = "runtime.state_dir = " + cfg.runtime.state_dir + ": " + anc + " is not a writable directory";
  }
  items.push_back(std::move(state));

  CheckItem root{"privileges", true, R::kOk, "root"};
  if (::geteuid() != 0) {
    root.result = R::kFail;
    root.detail = "not root: sharing a rootfs with the VM needs mount(2)";
  }
  items.push_back(std::move(root));

  auto layout = hypervisor::DetectCgroupLayout();
  items.push_back(CgroupItem(cfg, layout.ok() ? *layout : hypervisor::CgroupLayout{}, ::geteuid() == 0));
  items.push_back(RunasItem(cfg));
  return items;
}

CheckItem CgroupItem(const config::Config& cfg, const hypervisor::CgroupLayout& l, bool root) {
  const auto& rt = cfg.runtime;
  CheckItem it{"cgroup", rt.sandbox_cgroup, R::kOk, ""};
  if (l.v2()) {
    it.detail = "cgroup v2 at " + l.unified + " (memory, cpu, pids)";
  } else if (l.v1()) {
    it.detail = "cgroup v1: memory " + l.memory + ", cpu " + l.cpu + ", pids " + l.pids;
    if (!l.unified.empty()) it.detail += "; cgroup2 " + l.unified + " for cgroup.kill";
  } else {
    it.result = rt.sandbox_cgroup ? R::kFail : R::kInfo;
    it.detail = "no usable hierarchy (need v2 with memory, cpu, pids, or the three v1 hierarchies)";
  }
  if (it.result == R::kOk && !root) {
    it.result = rt.sandbox_cgroup ? R::kFail : R::kInfo;
    it.detail += "; not root: cannot create pod cgroups";
  }
  if (!rt.sandbox_cgroup) {
    if (it.result == R::kOk) it.result = R::kInfo;
    it.detail += "; off (runtime.sandbox_cgroup = false)";
  } else {
    it.detail += "; pods in " + rt.cgroup_parent + "/<id>" + (rt.cgroup_shim ? " with their shim" : "") +
                 ", memory limit " +
                 (rt.cgroup_memory_overhead_mib == 0
                      ? std::string("none")
                      : std::to_string(cfg.hypervisor.memory_mib + rt.cgroup_memory_overhead_mib) + " MiB") +
                 ", cpu " + std::to_string(cfg.hypervisor.vcpus + 1) + " cores, pids " +
                 (rt.cgroup_pids_max == 0 ? std::string("unlimited") : std::to_string(rt.cgroup_pids_max));
  }
  return it;
}

CheckItem RunasItem(const config::Config& cfg) {
  std::string user = sandbox::VmSettingsFromConfig(cfg).runas;
  CheckItem it{"runas", false, R::kOk, ""};
  if (user.empty()) {
    it.result = R::kInfo;
    it.detail = "QEMU stays root (hypervisor.runas = " + cfg.hypervisor.runas + ")";
    return it;
  }
  if (user.find(':') == std::string::npos) {
    passwd pw{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr) {
      it.result = R::kFail;
      it.required = true;
      it.detail = "hypervisor.runas = " + cfg.hypervisor.runas + ": no user \"" + user + "\"";
      return it;
    }
  }
  it.detail = "QEMU drops to " + user + " after start-up (hypervisor.runas = " + cfg.hypervisor.runas + ")";
  return it;
}

std::string RenderChecks(const std::vector<CheckItem>& items) {
  size_t w = 5;
  for (const auto& i : items) w = std::max(w, i.name.size());
  auto pad = [](std::string s, size_t n) {
    s.resize(std::max(n, s.size()), ' ');
    return s;
  };
  std::string out = pad("CHECK", w) + "  RESULT  DETAIL\n";
  for (const auto& i : items) {
    const char* r = i.result == R::kOk ? "ok" : i.result == R::kFail ? (i.required ? "FAIL" : "warn") : "info";
    out += pad(i.name, w) + "  " + pad(r, 6) + "  " + i.detail + "\n";
  }
  return out;
}

CheckItem ContainerdItem(const std::string& containerd_config) {
  ContainerdCaskStatus st = InspectContainerd(containerd_config);
  return {"containerd", false, st.configured ? R::kOk : R::kFail, st.detail};
}

bool AllRequiredPass(const std::vector<CheckItem>& items) {
  return std::none_of(items.begin(), items.end(),
                      [](const CheckItem& i) { return i.required && i.result == R::kFail; });
}

CheckItem PoolItem(const config::Config& cfg) {
  CheckItem it{"pool", false, R::kInfo, ""};
  if (!cfg.pool.enabled) {
    it.detail = "disabled (pool.enabled = false): every pod boots its VM";
    return it;
  }
  auto s = pool::QueryStatus(cfg.pool.socket);
  if (!s.ok()) {
    it.detail = cfg.pool.socket + " not answering: pods boot cold" +
                std::string(cfg.pool.autostart ? " (the first shim starts the pool)" : "") + " [" +
                BoundedString(s.error().message(), 120) + "]";
    return it;
  }
  it.result = R::kOk;
  it.detail = cfg.pool.socket + ": size " + std::to_string(s->size) + ", ready " + std::to_string(s->ready) +
              ", booting " + std::to_string(s->booting) + ", handed over " + std::to_string(s->handed_over) +
              " (VMs of " + std::to_string(s->key.vcpus) + " vCPU, " + std::to_string(s->key.memory_mib) + " MiB, " +
              (s->key.nic ? "with a NIC for pods with a network namespace" : "no NIC: pods with a network namespace boot cold") + ")";
  return it;
}

int Check(const std::string& config_path, const std::string& containerd_config) {
  auto cfg = config_path.empty() ? config::LoadDefault() : config::LoadFile(config_path);
  if (!cfg.ok()) {
    std::vector<CheckItem> items = {{"config", true, R::kFail, cfg.error().ToString()}};
    std::fputs(RenderChecks(items).c_str(), stdout);
    return 1;
  }
  auto items = RunHostChecks(*cfg, hypervisor::ProbeHost());
  items.push_back(PoolItem(*cfg));
  items.push_back(ContainerdItem(containerd_config));
  std::fputs(RenderChecks(items).c_str(), stdout);
  return AllRequiredPass(items) ? 0 : 1;
}

}  // namespace cask::runtime
