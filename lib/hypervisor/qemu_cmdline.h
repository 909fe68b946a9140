// The QEMU command line, built from one small struct per option group.
//
// Nothing here touches the system: BuildQemuArgv turns a QemuCommand into an
// argv (no shell, no quoting) and is unit-tested flag by flag
// (qemu_cmdline_test.cc). The facts behind the flags, measured on QEMU 7.2
// (see also docs/architecture.md):
//  - microvm needs x-option-roms=off,isa-serial=on,rtc=on (rtc=off costs
//    2 s), modern virtio-mmio (virtio-mmio.force-legacy=false, which
//    vhost-user-fs requires), and tsc_early_khz=<host kHz> on the kernel
//    command line under TCG (without it the guest hangs calibrating the TSC),
//    with tsc=reliable (otherwise the guest keeps time in jiffies);
//  - vhost-user (virtio-fs) needs guest RAM in a shared memfd backend;
//  - -cpu qemu64 boots fastest under TCG; -cpu host under KVM.
// Option values that QEMU parses as key=value lists (paths inside -chardev,
// -name) have their commas doubled, QEMU's escape.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/hypervisor/hypervisor.h"

namespace cask::hypervisor::qemu {

enum class MachineType { kMicrovm, kQ35, kPc };
// "microvm" | "q35" | "pc"; anything else is INVALID_ARGUMENT naming
// hypervisor.machine_type.
Result<MachineType> ParseMachineType(std::string_view word);
std::string_view MachineTypeName(MachineType t);

struct MachineOptions {
  MachineType type = MachineType::kMicrovm;
};

struct AccelOptions {
  Accel accel = Accel::kTcg;  // resolved: kKvm or kTcg (kAuto is treated as kTcg)
  uint32_t vcpus = 1;
  // TCG translation block cache in MiB (-accel tcg,tb-size=N); 0 leaves
  // QEMU's default. Not used under KVM.
  uint32_t tcg_tb_size_mib = 0;
};

struct MemoryOptions {
  uint32_t mib = 256;
  // Guest RAM is the shareable memfd object "mem" (needed by vhost-user
  // devices such as virtio-fs): microvm takes it as its memory-backend,
  // pc/q35 through a NUMA node.
  bool shared = false;
};

struct KernelOptions {
  std::string kernel;               // uncompressed vmlinux (PVH) or bzImage
  std::string initrd;
  std::vector<std::string> params;  // joined with spaces into -append
};

struct ConsoleOptions {
  // The guest's ttyS0 is a socket chardev on this fd number in QEMU: one
  // end of a connected stream socket pair whose other end the host reads
  // (bounded; see capped_log.h). Not a file: the guest decides how much it
  // writes. -1: no console (-serial none).
  int socket_fd = -1;
};

struct AgentOptions {
  Channel channel = Channel::kSerial;
  std::string socket_path;          // serial: QEMU listens here (server=on,wait=off)
  uint32_t guest_cid = 0;           // vsock
  int vhost_fd = -1;                // vsock: an already-open /dev/vhost-vsock fd number in QEMU, or -1
};

struct VirtioFsOptions {
  std::string socket_path;          // virtiofsd's vhost-user socket
  std::string tag = kVirtiofsTag;
};

// One virtio-net NIC backed by an already-open TAP fd (the host made the
// TAP in the pod's network namespace; see lib/net/pod_network.h):
// -netdev tap,id=net<i>,fd=<tap_fd>,vhost=off|on[,vhostfd=<vhost_fd>]
// -device virtio-net-device|virtio-net-pci,netdev=net<i>,mac=<mac>
struct NetOptions {
  int tap_fd = -1;    // fd number in QEMU
  int vhost_fd = -1;  // an open /dev/vhost-net fd number in QEMU, or -1: vhost=off
  std::string mac;    // "aa:bb:cc:dd:ee:ff" (validated by the caller)
};

struct QmpOptions {
  std::string socket_path;          // QEMU listens here (server=on,wait=off)
};

struct QemuCommand {
  std::string binary;
  std::string name;                 // -name, shows in ps
  MachineOptions machine;
  AccelOptions accel;
  MemoryOptions memory;
  KernelOptions kernel;
  ConsoleOptions console;
  AgentOptions agent;
  std::optional<VirtioFsOptions> virtiofs;
  std::vector<NetOptions> nics;
  QmpOptions qmp;
  // A virtio-balloon with free page reporting: pages the guest frees are
  // reported and QEMU gives them back to the host (the balloon itself is
  // never inflated). Needs the guest's VIRTIO_BALLOON + PAGE_REPORTING.
  bool free_page_reporting = false;
  // -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny
  bool seccomp = true;
  // -runas <user or uid:gid>: QEMU drops to this user after opening its
  // files, sockets and devices. QEMU installs its seccomp filter before it
  // drops the user, so set*uid must stay allowed then
  // (elevateprivileges=allow); once every uid is unprivileged the process
  // has no capability left with which to get root back.
  std::string runas;
};

std::vector<std::string> BuildQemuArgv(const QemuCommand& cmd);

// Doubles every ',' (QEMU's escape inside key=value option lists).
std::string EscapeOptionValue(std::string_view v);

// Inputs of the guest kernel command line.
struct KernelParamsOptions {
  MachineType machine = MachineType::kMicrovm;
  Accel accel = Accel::kTcg;
  uint64_t tsc_khz = 0;             // host TSC; 0 = unknown
  Channel channel = Channel::kSerial;
  bool debug = false;
  std::string user_params;          // hypervisor.kernel_params, split on whitespace
  std::vector<std::string> extra;   // VmSettings::extra_kernel_params
};

// console=ttyS0 panic=-1 [quiet] [tsc_early_khz=N [tsc=reliable under TCG]]
// cask.channel=serial|vsock
// [cask.debug=1] <user params> <extra>. User parameters come last so they
// can override earlier ones. microvm under TCG with an unknown TSC
// frequency is FAILED_PRECONDITION (the guest would hang).
Result<std::vector<std::string>> KernelParams(const KernelParamsOptions& opts);

}  // namespace cask::hypervisor::qemu
