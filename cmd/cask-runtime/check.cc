#include "cmd/cask-runtime/check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "lib/base/fs.h"
#include "lib/base/process.h"

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
  config::Accel accel = hypervisor::ResolveAccel(hv.accel, probe);
  CheckItem kvm{"kvm", hv.accel == config::Accel::kKvm, R::kInfo, ""};
  if (probe.kvm_usable && probe.cpu_has_virt) {
    kvm.result = R::kOk;
    kvm.detail = "/dev/kvm usable";
  } else {
    kvm.result = hv.accel == config::Accel::kKvm ? R::kFail : R::kInfo;
    kvm.detail = std::string(probe.kvm_usable ? "no vmx/svm in /proc/cpuinfo" : "/dev/kvm not usable");
  }
  kvm.detail += "; accel = " + std::string(config::AccelName(accel)) + " (hypervisor.accel = " +
                std::string(config::AccelName(hv.accel)) + ")";
  items.push_back(std::move(kvm));

  hypervisor::Channel ch = hypervisor::ResolveChannel(cfg.agent.channel, probe);
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
  return items;
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

bool AllRequiredPass(const std::vector<CheckItem>& items) {
  return std::none_of(items.begin(), items.end(),
                      [](const CheckItem& i) { return i.required && i.result == R::kFail; });
}

int Check(const std::string& config_path) {
  auto cfg = config_path.empty() ? config::LoadDefault() : config::LoadFile(config_path);
  if (!cfg.ok()) {
    std::vector<CheckItem> items = {{"config", true, R::kFail, cfg.error().ToString()}};
    std::fputs(RenderChecks(items).c_str(), stdout);
    return 1;
  }
  auto items = RunHostChecks(*cfg, hypervisor::ProbeHost());
  std::fputs(RenderChecks(items).c_str(), stdout);
  return AllRequiredPass(items) ? 0 : 1;
}

}  // namespace cask::runtime
