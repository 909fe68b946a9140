#include "lib/hypervisor/qemu_cmdline.h"

#include <utility>

namespace cask::hypervisor::qemu {
namespace {

// CPU model under TCG. qemu64 boots fastest (measured: 2.29 s vs
// 2.72 s for "max" on microvm); the x86-64-v2 features are added because
// current distribution images (glibc built for x86-64-v2, e.g. RHEL 9) abort
// on a plain qemu64 ("CPU does not support x86-64-v2"). They cost nothing:
// under -icount the guest runs 509.6 M instructions to /init with them,
// 511.6 M without, 522.1 M with "max".
constexpr const char* kTcgCpu = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16";

void Add(std::vector<std::string>* argv, std::string a, std::string b) {
  argv->push_back(std::move(a));
  argv->push_back(std::move(b));
}

bool IsMicrovm(const MachineOptions& m) { return m.type == MachineType::kMicrovm; }

void AppendMachine(std::vector<std::string>* argv, const MachineOptions& m, const MemoryOptions& mem) {
  switch (m.type) {
    case MachineType::kMicrovm: {
      std::string opt = "microvm,x-option-roms=off,isa-serial=on,rtc=on";
      if (mem.shared) opt += ",memory-backend=mem";
      Add(argv, "-M", opt);
      // Modern virtio-mmio: vhost-user refuses legacy devices.
      Add(argv, "-global", "virtio-mmio.force-legacy=false");
      break;
    }
    case MachineType::kQ35: Add(argv, "-M", "q35"); break;
    case MachineType::kPc: Add(argv, "-M", "pc"); break;
  }
}

void AppendAccel(std::vector<std::string>* argv, const AccelOptions& a) {
  if (a.accel == Accel::kKvm) {
    Add(argv, "-accel", "kvm");
    Add(argv, "-cpu", "host");
  } else {
    std::string tcg = "tcg";
    if (a.tcg_tb_size_mib > 0) tcg += ",tb-size=" + std::to_string(a.tcg_tb_size_mib);
    Add(argv, "-accel", tcg);
    Add(argv, "-cpu", kTcgCpu);
  }
  Add(argv, "-smp", std::to_string(a.vcpus));
}

void AppendMemory(std::vector<std::string>* argv, const MachineOptions& m, const MemoryOptions& mem) {
  std::string size = std::to_string(mem.mib) + "M";
  Add(argv, "-m", size);
  if (!mem.shared) return;
  Add(argv, "-object", "memory-backend-memfd,id=mem,size=" + size + ",share=on");
  if (!IsMicrovm(m)) Add(argv, "-numa", "node,memdev=mem");
}

void AppendFixed(std::vector<std::string>* argv, bool seccomp, const std::string& runas) {
  for (const char* a : {"-nodefaults", "-no-user-config", "-no-reboot"}) argv->push_back(a);
  Add(argv, "-display", "none");
  if (seccomp) {
    std::string elevate = runas.empty() ? "deny" : "allow";
    Add(argv, "-sandbox", "on,obsolete=deny,elevateprivileges=" + elevate + ",spawn=deny,resourcecontrol=deny");
  }
  if (!runas.empty()) Add(argv, "-runas", runas);
}

void AppendConsole(std::vector<std::string>* argv, const ConsoleOptions& c) {
  if (c.socket_fd < 0) {
    Add(argv, "-serial", "none");
    return;
  }
  Add(argv, "-chardev", "socket,id=console,fd=" + std::to_string(c.socket_fd));
  Add(argv, "-serial", "chardev:console");
}

void AppendKernel(std::vector<std::string>* argv, const KernelOptions& k) {
  Add(argv, "-kernel", k.kernel);
  Add(argv, "-initrd", k.initrd);
  std::string append;
  for (const auto& p : k.params) {
    if (!append.empty()) append += ' ';
    append += p;
  }
  Add(argv, "-append", append);
}

// The agent's virtio-serial bus holds port 0 (reserved by QEMU for a
// console) and the agent's port 1, nothing else. QEMU's default of 31 ports
// makes the guest set up 64 virtqueues, and on microvm each one has 1024
// entries (virtio-mmio offers QEMU's largest queue size and Linux takes it):
// measured, 4.0 MiB less guest RAM touched per idle pod with max_ports=2.
constexpr const char* kSerialMaxPorts = ",max_ports=2";

void AppendAgent(std::vector<std::string>* argv, const MachineOptions& m, const AgentOptions& a) {
  if (a.channel == Channel::kSerial) {
    Add(argv, "-device", std::string(IsMicrovm(m) ? "virtio-serial-device" : "virtio-serial-pci") + kSerialMaxPorts);
    Add(argv, "-chardev", "socket,id=agent,path=" + EscapeOptionValue(a.socket_path) + ",server=on,wait=off");
    Add(argv, "-device", std::string("virtserialport,chardev=agent,name=") + kAgentPortName);
    return;
  }
  std::string dev = IsMicrovm(m) ? "vhost-vsock-device" : "vhost-vsock-pci";
  dev += ",guest-cid=" + std::to_string(a.guest_cid);
  if (a.vhost_fd >= 0) dev += ",vhostfd=" + std::to_string(a.vhost_fd);
  Add(argv, "-device", dev);
}

void AppendVirtioFs(std::vector<std::string>* argv, const MachineOptions& m, const VirtioFsOptions& fs) {
  Add(argv, "-chardev", "socket,id=virtiofs,path=" + EscapeOptionValue(fs.socket_path));
  Add(argv, "-device", std::string(IsMicrovm(m) ? "vhost-user-fs-device" : "vhost-user-fs-pci") +
                           ",chardev=virtiofs,tag=" + EscapeOptionValue(fs.tag));
}

void AppendNics(std::vector<std::string>* argv, const MachineOptions& m, const std::vector<NetOptions>& nics) {
  for (size_t i = 0; i < nics.size(); ++i) {
    const NetOptions& n = nics[i];
    std::string id = "net" + std::to_string(i);
    std::string netdev = "tap,id=" + id + ",fd=" + std::to_string(n.tap_fd);
    if (n.vhost_fd >= 0) netdev += ",vhost=on,vhostfd=" + std::to_string(n.vhost_fd);
    else netdev += ",vhost=off";
    Add(argv, "-netdev", netdev);
    Add(argv, "-device", std::string(IsMicrovm(m) ? "virtio-net-device" : "virtio-net-pci") + ",netdev=" + id +
                             ",mac=" + EscapeOptionValue(n.mac));
  }
}

void AppendBalloon(std::vector<std::string>* argv, const MachineOptions& m) {
  Add(argv, "-device",
      std::string(IsMicrovm(m) ? "virtio-balloon-device" : "virtio-balloon-pci") + ",free-page-reporting=on");
}

void AppendQmp(std::vector<std::string>* argv, const QmpOptions& q) {
  Add(argv, "-chardev", "socket,id=qmp,path=" + EscapeOptionValue(q.socket_path) + ",server=on,wait=off");
  Add(argv, "-mon", "chardev=qmp,mode=control");
}

}  // namespace

Result<MachineType> ParseMachineType(std::string_view word) {
  if (word == "microvm") return MachineType::kMicrovm;
  if (word == "q35") return MachineType::kQ35;
  if (word == "pc") return MachineType::kPc;
  return Error::InvalidArgument("hypervisor.machine_type: must be microvm, q35 or pc, got \"" +
                                std::string(word) + "\"");
}

std::string_view MachineTypeName(MachineType t) {
  switch (t) {
    case MachineType::kMicrovm: return "microvm";
    case MachineType::kQ35: return "q35";
    case MachineType::kPc: return "pc";
  }
  return "?";
}

std::string EscapeOptionValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::vector<std::string> BuildQemuArgv(const QemuCommand& cmd) {
  std::vector<std::string> argv{cmd.binary};
  if (!cmd.name.empty()) Add(&argv, "-name", EscapeOptionValue(cmd.name));
  AppendMachine(&argv, cmd.machine, cmd.memory);
  AppendAccel(&argv, cmd.accel);
  AppendMemory(&argv, cmd.machine, cmd.memory);
  AppendFixed(&argv, cmd.seccomp, cmd.runas);
  AppendConsole(&argv, cmd.console);
  AppendKernel(&argv, cmd.kernel);
  AppendAgent(&argv, cmd.machine, cmd.agent);
  if (cmd.virtiofs) AppendVirtioFs(&argv, cmd.machine, *cmd.virtiofs);
  AppendNics(&argv, cmd.machine, cmd.nics);
  if (cmd.free_page_reporting) AppendBalloon(&argv, cmd.machine);
  AppendQmp(&argv, cmd.qmp);
  return argv;
}

Result<std::vector<std::string>> KernelParams(const KernelParamsOptions& o) {
  std::vector<std::string> p{"console=ttyS0", "panic=-1"};
  if (!o.debug) p.push_back("quiet");
  if (o.machine == MachineType::kMicrovm) {
    if (o.tsc_khz > 0) {
      p.push_back("tsc_early_khz=" + std::to_string(o.tsc_khz));
      // Under TCG the guest's TSC is the host's (one vCPU, the host's
      // frequency), but the emulated CPU does not say it is constant, so
      // the kernel would drop it and keep time in 4 ms jiffies: every
      // sub-tick timer of the agent (output batching waits of 1-2 ms)
      // would last a tick or two.
      if (o.accel != Accel::kKvm) p.push_back("tsc=reliable");
    } else if (o.accel != Accel::kKvm) {
      return Error::FailedPrecondition(
          "hypervisor.machine_type = microvm under TCG needs the host TSC frequency (tsc_early_khz), "
          "but /proc/cpuinfo has no \"cpu MHz\"; use machine_type = \"q35\"");
    }
  }
  p.push_back("cask.channel=" + std::string(ChannelWord(o.channel)));
  if (o.debug) p.push_back("cask.debug=1");
  std::string_view u = o.user_params;
  while (!u.empty()) {
    size_t start = u.find_first_not_of(" \t\n");
    if (start == std::string_view::npos) break;
    u.remove_prefix(start);
    size_t end = u.find_first_of(" \t\n");
    p.emplace_back(u.substr(0, end));
    if (end == std::string_view::npos) break;
    u.remove_prefix(end);
  }
  for (const auto& e : o.extra) {
    if (!e.empty()) p.push_back(e);
  }
  return p;
}

}  // namespace cask::hypervisor::qemu
