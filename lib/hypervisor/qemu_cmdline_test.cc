#include "lib/hypervisor/qemu_cmdline.h"

#include <algorithm>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cask::hypervisor::qemu {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

QemuCommand Base(MachineType m) {
  QemuCommand c;
  c.binary = "/usr/bin/qemu-system-x86_64";
  c.name = "cask-sb1";
  c.machine.type = m;
  c.accel.accel = Accel::kTcg;
  c.accel.vcpus = 1;
  c.memory.mib = 256;
  c.kernel = {"/k/vmlinux", "/k/initrd.img", {"console=ttyS0", "panic=-1"}};
  c.console.socket_fd = 4;
  c.agent.channel = Channel::kSerial;
  c.agent.socket_path = "/run/cask/sb1/agent.sock";
  c.qmp.socket_path = "/run/cask/sb1/qmp.sock";
  return c;
}

const std::vector<std::string> kTail = {
    "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    "-chardev", "socket,id=console,fd=4", "-serial", "chardev:console",
    "-kernel", "/k/vmlinux", "-initrd", "/k/initrd.img", "-append", "console=ttyS0 panic=-1"};

std::vector<std::string> Concat(std::initializer_list<std::vector<std::string>> parts) {
  std::vector<std::string> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(QemuCmdline, MicrovmTcgSerialWithVirtioFs) {
  QemuCommand c = Base(MachineType::kMicrovm);
  c.memory.shared = true;
  c.virtiofs = VirtioFsOptions{"/run/cask/sb1/virtiofsd.sock", "cask"};
  auto want = Concat({
      {"/usr/bin/qemu-system-x86_64", "-name", "cask-sb1",
       "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=mem",
       "-global", "virtio-mmio.force-legacy=false",
       "-accel", "tcg", "-cpu", "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16", "-smp", "1",
       "-m", "256M", "-object", "memory-backend-memfd,id=mem,size=256M,share=on"},
      kTail,
      {"-device", "virtio-serial-device,max_ports=2",
       "-chardev", "socket,id=agent,path=/run/cask/sb1/agent.sock,server=on,wait=off",
       "-device", "virtserialport,chardev=agent,name=cask.agent",
       "-chardev", "socket,id=virtiofs,path=/run/cask/sb1/virtiofsd.sock",
       "-device", "vhost-user-fs-device,chardev=virtiofs,tag=cask",
       "-chardev", "socket,id=qmp,path=/run/cask/sb1/qmp.sock,server=on,wait=off",
       "-mon", "chardev=qmp,mode=control"},
  });
  EXPECT_THAT(BuildQemuArgv(c), ElementsAreArray(want));
}

TEST(QemuCmdline, MicrovmWithoutVirtioFsHasNoSharedMemory) {
  QemuCommand c = Base(MachineType::kMicrovm);
  auto argv = BuildQemuArgv(c);
  auto want = Concat({
      {"/usr/bin/qemu-system-x86_64", "-name", "cask-sb1",
       "-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on",
       "-global", "virtio-mmio.force-legacy=false",
       "-accel", "tcg", "-cpu", "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16", "-smp", "1", "-m", "256M"},
      kTail,
      {"-device", "virtio-serial-device,max_ports=2",
       "-chardev", "socket,id=agent,path=/run/cask/sb1/agent.sock,server=on,wait=off",
       "-device", "virtserialport,chardev=agent,name=cask.agent",
       "-chardev", "socket,id=qmp,path=/run/cask/sb1/qmp.sock,server=on,wait=off",
       "-mon", "chardev=qmp,mode=control"},
  });
  EXPECT_THAT(argv, ElementsAreArray(want));
}

// The value following `flag` in argv ("" when absent).
std::string ValueAfter(const std::vector<std::string>& argv, const std::string& flag) {
  for (size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == flag) return argv[i + 1];
  return "";
}

TEST(QemuCmdline, TcgTranslationCacheSize) {
  QemuCommand c = Base(MachineType::kMicrovm);
  c.accel.accel = Accel::kTcg;
  c.accel.tcg_tb_size_mib = 64;
  EXPECT_EQ(ValueAfter(BuildQemuArgv(c), "-accel"), "tcg,tb-size=64");
  c.accel.tcg_tb_size_mib = 0;  // QEMU's default
  EXPECT_EQ(ValueAfter(BuildQemuArgv(c), "-accel"), "tcg");
  c.accel.accel = Accel::kKvm;  // no translation cache under KVM
  c.accel.tcg_tb_size_mib = 64;
  EXPECT_EQ(ValueAfter(BuildQemuArgv(c), "-accel"), "kvm");
}

TEST(QemuCmdline, FreePageReportingBalloon) {
  QemuCommand c = Base(MachineType::kMicrovm);
  auto argv = BuildQemuArgv(c);
  EXPECT_TRUE(std::none_of(argv.begin(), argv.end(),
                           [](const std::string& a) { return a.find("balloon") != std::string::npos; }));
  c.free_page_reporting = true;
  argv = BuildQemuArgv(c);
  EXPECT_NE(std::find(argv.begin(), argv.end(), "virtio-balloon-device,free-page-reporting=on"), argv.end());
  c = Base(MachineType::kQ35);
  c.free_page_reporting = true;
  argv = BuildQemuArgv(c);
  EXPECT_NE(std::find(argv.begin(), argv.end(), "virtio-balloon-pci,free-page-reporting=on"), argv.end());
}

TEST(QemuCmdline, Q35KvmVsockWithVirtioFs) {
  QemuCommand c = Base(MachineType::kQ35);
  c.accel.accel = Accel::kKvm;
  c.accel.vcpus = 4;
  c.memory.mib = 2048;
  c.memory.shared = true;
  c.agent.channel = Channel::kVsock;
  c.agent.guest_cid = 1234;
  c.agent.vhost_fd = 3;
  c.virtiofs = VirtioFsOptions{"/run/cask/sb1/virtiofsd.sock", "cask"};
  auto want = Concat({
      {"/usr/bin/qemu-system-x86_64", "-name", "cask-sb1", "-M", "q35",
       "-accel", "kvm", "-cpu", "host", "-smp", "4",
       "-m", "2048M", "-object", "memory-backend-memfd,id=mem,size=2048M,share=on",
       "-numa", "node,memdev=mem"},
      kTail,
      {"-device", "vhost-vsock-pci,guest-cid=1234,vhostfd=3",
       "-chardev", "socket,id=virtiofs,path=/run/cask/sb1/virtiofsd.sock",
       "-device", "vhost-user-fs-pci,chardev=virtiofs,tag=cask",
       "-chardev", "socket,id=qmp,path=/run/cask/sb1/qmp.sock,server=on,wait=off",
       "-mon", "chardev=qmp,mode=control"},
  });
  EXPECT_THAT(BuildQemuArgv(c), ElementsAreArray(want));
}

TEST(QemuCmdline, PcTcgSerialWithoutVirtioFs) {
  QemuCommand c = Base(MachineType::kPc);
  c.seccomp = false;
  auto argv = BuildQemuArgv(c);
  auto want = std::vector<std::string>{
      "/usr/bin/qemu-system-x86_64", "-name", "cask-sb1", "-M", "pc",
      "-accel", "tcg", "-cpu", "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16", "-smp", "1", "-m", "256M",
      "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
      "-chardev", "socket,id=console,fd=4", "-serial", "chardev:console",
      "-kernel", "/k/vmlinux", "-initrd", "/k/initrd.img", "-append", "console=ttyS0 panic=-1",
      "-device", "virtio-serial-pci,max_ports=2",
      "-chardev", "socket,id=agent,path=/run/cask/sb1/agent.sock,server=on,wait=off",
      "-device", "virtserialport,chardev=agent,name=cask.agent",
      "-chardev", "socket,id=qmp,path=/run/cask/sb1/qmp.sock,server=on,wait=off",
      "-mon", "chardev=qmp,mode=control"};
  EXPECT_THAT(argv, ElementsAreArray(want));
}

TEST(QemuCmdline, MicrovmVsockUsesMmioDevice) {
  QemuCommand c = Base(MachineType::kMicrovm);
  c.agent.channel = Channel::kVsock;
  c.agent.guest_cid = 7;
  auto argv = BuildQemuArgv(c);
  auto it = std::find(argv.begin(), argv.end(), "vhost-vsock-device,guest-cid=7");
  EXPECT_NE(it, argv.end());
  for (const auto& a : argv) EXPECT_EQ(a.find("virtio-serial"), std::string::npos) << a;
}

TEST(QemuCmdline, CommasInPathsAreEscaped) {
  QemuCommand c = Base(MachineType::kPc);
  c.qmp.socket_path = "/tmp/a,b/qmp.sock";
  auto argv = BuildQemuArgv(c);
  EXPECT_NE(std::find(argv.begin(), argv.end(), "socket,id=qmp,path=/tmp/a,,b/qmp.sock,server=on,wait=off"),
            argv.end());
  EXPECT_EQ(EscapeOptionValue(",a,,"), ",,a,,,,");
}

TEST(QemuCmdline, ConsoleIsASocketNeverAFile) {
  QemuCommand c = Base(MachineType::kMicrovm);
  c.console.socket_fd = 5;
  auto argv = BuildQemuArgv(c);
  EXPECT_NE(std::find(argv.begin(), argv.end(), "socket,id=console,fd=5"), argv.end());
  for (const auto& a : argv) EXPECT_EQ(a.rfind("file,", 0), std::string::npos) << a;
  c.console.socket_fd = -1;
  argv = BuildQemuArgv(c);
  auto it = std::find(argv.begin(), argv.end(), "-serial");
  ASSERT_NE(it, argv.end());
  EXPECT_EQ(*(it + 1), "none");
}

std::vector<std::string> After(const std::vector<std::string>& argv, const std::string& flag) {
  std::vector<std::string> out;
  for (size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == flag) out.push_back(argv[i + 1]);
  return out;
}

TEST(QemuCmdline, TapNicsOnMicrovmAndQ35) {
  QemuCommand c = Base(MachineType::kMicrovm);
  c.nics.push_back(NetOptions{10, -1, "02:42:0a:58:4d:05"});
  c.nics.push_back(NetOptions{12, 13, "02:42:0a:58:4d:06"});
  auto argv = BuildQemuArgv(c);
  EXPECT_THAT(After(argv, "-netdev"),
              ElementsAreArray({"tap,id=net0,fd=10,vhost=off", "tap,id=net1,fd=12,vhost=on,vhostfd=13"}));
  auto devices = After(argv, "-device");
  EXPECT_THAT(devices, ::testing::Contains("virtio-net-device,netdev=net0,mac=02:42:0a:58:4d:05"));
  EXPECT_THAT(devices, ::testing::Contains("virtio-net-device,netdev=net1,mac=02:42:0a:58:4d:06"));
  c.machine.type = MachineType::kQ35;
  EXPECT_THAT(After(BuildQemuArgv(c), "-device"),
              ::testing::Contains("virtio-net-pci,netdev=net0,mac=02:42:0a:58:4d:05"));
  c.nics.clear();
  EXPECT_TRUE(After(BuildQemuArgv(c), "-netdev").empty());
}

TEST(QemuCmdline, ParseMachineType) {
  EXPECT_EQ(*ParseMachineType("microvm"), MachineType::kMicrovm);
  EXPECT_EQ(*ParseMachineType("q35"), MachineType::kQ35);
  EXPECT_EQ(*ParseMachineType("pc"), MachineType::kPc);
  auto bad = ParseMachineType("virt");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.error().ToString(), HasSubstr("hypervisor.machine_type"));
  EXPECT_THAT(bad.error().ToString(), HasSubstr("virt"));
  for (auto t : {MachineType::kMicrovm, MachineType::kQ35, MachineType::kPc})
    EXPECT_EQ(*ParseMachineType(MachineTypeName(t)), t);
}

TEST(KernelParams, MicrovmTcgQuietSerial) {
  KernelParamsOptions o;
  o.machine = MachineType::kMicrovm;
  o.tsc_khz = 2445404;
  auto p = KernelParams(o);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_THAT(*p, ElementsAreArray({"console=ttyS0", "panic=-1", "quiet", "tsc_early_khz=2445404", "tsc=reliable",
                                    "cask.channel=serial"}));
}

TEST(KernelParams, MicrovmKvmKeepsTheKernelsClockChoice) {
  KernelParamsOptions o;
  o.machine = MachineType::kMicrovm;
  o.accel = Accel::kKvm;
  o.tsc_khz = 2445404;
  auto p = KernelParams(o);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  for (const auto& s : *p) EXPECT_NE(s, "tsc=reliable");
}

TEST(KernelParams, DebugVsockUserAndExtraParamsLast) {
  KernelParamsOptions o;
  o.machine = MachineType::kQ35;
  o.tsc_khz = 2445404;  // only microvm needs it
  o.channel = Channel::kVsock;
  o.debug = true;
  o.user_params = "  loglevel=7\tfoo=bar  ";
  o.extra = {"cask.test=1", ""};
  auto p = KernelParams(o);
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(*p, ElementsAreArray({"console=ttyS0", "panic=-1", "cask.channel=vsock", "cask.debug=1",
                                    "loglevel=7", "foo=bar", "cask.test=1"}));
}

TEST(KernelParams, MicrovmTcgWithoutTscIsAnError) {
  KernelParamsOptions o;
  o.machine = MachineType::kMicrovm;
  o.accel = Accel::kTcg;
  auto p = KernelParams(o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(p.error().ToString(), HasSubstr("tsc_early_khz"));
  o.accel = Accel::kKvm;  // KVM has kvmclock
  auto k = KernelParams(o);
  ASSERT_TRUE(k.ok());
  for (const auto& s : *k) EXPECT_THAT(s, ::testing::Not(HasSubstr("tsc_early_khz")));
}

}  // namespace
}  // namespace cask::hypervisor::qemu
