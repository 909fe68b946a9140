// The hypervisor seam: start a pod VM, reach its agent, stop it.
//
// A Hypervisor starts VMs; a Vm is the one owner of everything a running VM
// consists of on the host: the VMM process (QEMU), its helper processes
// (virtiofsd), the sockets and logs in its state directory. Destroying a Vm
// stops it. The only backend is QEMU (NewQemu); a test may inject its own.
//
// Thread safety: a Vm's methods may be called from several threads at once
// (e.g. Exited() from a watcher while ConnectAgent() blocks); Stop() may run
// concurrently with the others and makes them fail or return promptly.
// Hypervisor::Start is safe to call concurrently for distinct state dirs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::hypervisor {

// The accelerator asked for; auto resolves to KVM when usable, else TCG.
enum class Accel { kAuto, kKvm, kTcg };
// The agent channel asked for; auto resolves to vsock when the host has it.
enum class ChannelRequest { kAuto, kVsock, kSerial };
// The channel actually used (after resolving "auto").
enum class Channel { kSerial, kVsock };

// "auto" / "kvm" / "tcg".
std::string_view AccelWord(Accel a);

// "serial" / "vsock": the word of the kernel parameter cask.channel=.
std::string_view ChannelWord(Channel c);

// Guest-side names shared with the agent (docs/architecture.md).
inline constexpr const char* kAgentPortName = "cask.agent";  // virtio-serial port
inline constexpr uint32_t kAgentVsockPort = 1024;
inline constexpr const char* kVirtiofsTag = "cask";

// The pod's host cgroup (host_cgroup.h): QEMU and virtiofsd start inside
// it, and Stop kills whatever is left in it and removes it.
struct VmCgroupSettings {
  bool enabled = false;
  // Below the calling process's own cgroup when relative ("cask" ->
  // <caller's cgroup>/cask/<id>-<hash of the state dir>), from the root when it starts
  // with '/'. Validated by host_cgroup.h's rule.
  std::string parent = "cask";
  bool include_caller = false;     // the calling process (the shim) joins the cgroup too
  uint32_t memory_overhead_mib = 0;  // memory limit = memory_mib + this; 0: no memory limit
  uint32_t cpu_quota_cores = 0;      // CPU limit in cores; 0: none
  uint32_t pids_max = 0;             // task limit; 0: none
};

// A NIC of the VM: a TAP made by the caller in the pod's network namespace
// (lib/net), which the caller keeps owning; Start passes QEMU a copy of the
// fd. The guest NIC gets `mac` (the pod veth's, "aa:bb:cc:dd:ee:ff").
// vhost-net is used when /dev/vhost-net opens, else vhost=off.
struct NicSettings {
  int tap_fd = -1;
  std::string mac;
};

// A ready VM's NIC as handed over (Hypervisor::TakeReady, Vm::TakeReadyNic):
// the TAP QEMU was started with, still in the giver's holding network
// namespace, and the MAC the guest NIC has. The taker moves the TAP into
// the pod's namespace (lib/net PodNetwork) and has the agent set the pod's
// MAC; a taker without a network namespace leaves the TAP down where it is
// (it goes with the VM).
struct ReadyNic {
  UniqueFd tap;    // a /dev/net/tun fd attached to the TAP
  UniqueFd netns;  // the namespace the TAP is in
  std::string tap_name;
  std::string guest_mac;  // "aa:bb:cc:dd:ee:ff"
};

// Everything Hypervisor::Start needs to know, filled by the caller (the
// sandbox builds it from the TOML configuration); this library reads no
// configuration file. Keys named in errors are the configuration keys the
// values usually come from (docs/configuration.md).
struct VmSettings {
  std::string id;                 // sandbox id, used in names (QEMU -name cask-<id>, the cgroup)
  // Per-VM directory for sockets and logs. Start creates it if absent; Stop
  // removes what Start put there, and the directory itself if Start created
  // it or it is left empty. Must be absolute.
  std::string state_dir;

  std::string qemu_path;          // hypervisor.path
  std::string kernel;             // hypervisor.kernel
  std::string initrd;             // hypervisor.initrd
  std::string machine_type = "microvm";  // microvm | q35 | pc
  Accel accel = Accel::kAuto;
  uint32_t vcpus = 1;             // 1..64
  uint32_t memory_mib = 256;      // 64..65536
  std::string kernel_params;      // user additions to the kernel command line
  std::string virtiofsd_path;     // hypervisor.virtiofsd_path
  std::string virtiofs_cache = "auto";  // auto | always | none
  uint32_t tcg_tb_size_mib = 0;   // hypervisor.tcg_tb_size_mib; TCG only, 0 = QEMU's default
  bool free_page_reporting = false;  // hypervisor.free_page_reporting (virtio-balloon)

  ChannelRequest channel = ChannelRequest::kAuto;
  std::string shared_dir;         // host dir exported over virtio-fs with tag "cask" (empty = none)
  bool debug = false;             // keep console log verbose (no "quiet"), cask.debug=1
  // Guest console lines are logged here ("guest console", line=...), at a
  // bounded rate (see qemu.cc); the default discards them.
  Logger console_logger;
  std::vector<std::string> extra_kernel_params;

  // QEMU drops to this user once its devices are set up (-runas): a user
  // name or "<uid>:<gid>"; empty keeps it root.
  std::string runas;
  VmCgroupSettings cgroup;
  // At most 8 (INVALID_ARGUMENT beyond, or with a bad fd or MAC).
  std::vector<NicSettings> nics;
  // TakeReady only: the pod will adopt the ready VM's NIC (it has a
  // network namespace); a ready VM without one does not fit.
  bool wants_ready_nic = false;
};

struct VmHandover;  // handover.h

class Vm {
 public:
  virtual ~Vm() = default;        // implementations Stop() if still running
  virtual pid_t pid() const = 0;  // the VMM (qemu) pid
  virtual Channel channel() const = 0;
  // A connected byte stream to the guest agent: a unix socket to QEMU's
  // chardev for serial (connects as soon as QEMU listens, before the guest
  // has booted), AF_VSOCK to the guest for vsock (connects once the agent
  // listens). Retries until `timeout` (DEADLINE_EXCEEDED); UNAVAILABLE with
  // the console tail if the VM exits meanwhile; FAILED_PRECONDITION after
  // Stop. Each call makes a new connection; a virtio-serial port carries one
  // connection at a time.
  virtual Result<UniqueFd> ConnectAgent(std::chrono::milliseconds timeout) = 0;
  // QMP "quit", waits up to `grace` for QEMU to exit, then SIGKILL; stops
  // virtiofsd (it exits when QEMU disconnects; killed if it does not);
  // kills what is left in the pod's cgroup and removes
  // it; removes the sockets and logs and the state dir (see VmSettings). Refuses
  // to remove anything below a mount point. Idempotent: later calls return
  // the first call's result.
  virtual Status Stop(std::chrono::milliseconds grace) = 0;
  // Non-blocking: has the VMM exited? (e.g. guest powered off or crashed)
  virtual bool Exited() = 0;
  // The console log on disk: the last part of the console only, its size
  // capped by the backend (QEMU: at most 512 KiB).
  virtual std::string console_log_path() const = 0;
  // The last `max_bytes` bytes of the console (kept in memory, bounded), starting at a line
  // boundary when possible, for error messages ("VM exited during boot:
  // <tail>"). Empty if there is no log (yet, or any more after Stop).
  virtual std::string ConsoleTail(size_t max_bytes) const = 0;
  // Pauses / resumes every vCPU (QMP stop / cont). Optional for backends.
  virtual Status Pause() { return Error::Unimplemented("pause is not supported by this hypervisor"); }
  virtual Status Resume() { return Error::Unimplemented("resume is not supported by this hypervisor"); }
  // Gives the running VM away (handover.h): the Vm stops its threads and
  // forgets its processes and state dir without stopping them; afterwards
  // it is inert (Stop does nothing, Exited is true). UNAVAILABLE if the VM
  // has exited, FAILED_PRECONDITION after Stop. Optional for backends
  // (UNIMPLEMENTED).
  virtual Result<VmHandover> Detach();
  // A VM taken from a pool with a NIC: its TAP, once (later calls and VMs
  // booted by Start: none). The VM keeps running without it.
  virtual std::optional<ReadyNic> TakeReadyNic() { return std::nullopt; }
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  // Validates the config (QEMU binary, kernel, initrd and, with a shared
  // dir, virtiofsd must exist: NOT_FOUND naming the path and the config key;
  // a bad machine type or cache mode: INVALID_ARGUMENT naming the key;
  // accel = kvm without a usable /dev/kvm or channel = vsock without
  // /dev/vhost-vsock: FAILED_PRECONDITION), starts virtiofsd (if
  // shared_dir) and QEMU, and returns once QEMU is running, i.e. answers on
  // QMP (not waiting for the guest). If QEMU exits first the error carries
  // its stderr. A failure unwinds everything: no process, socket or
  // directory is left behind.
  // With cgroup.enabled, the pod's cgroup is created first (a failure is
  // an error: FAILED_PRECONDITION without usable cgroups, ALREADY_EXISTS
  // when one of that name is in use) and QEMU and virtiofsd are placed in
  // it at spawn. The VM's host processes and cgroup are recorded in the
  // state dir (vm_leftovers.h) for cleanup after a dead owner.
  virtual Result<std::unique_ptr<Vm>> Start(const VmSettings& cfg) = 0;
  // A VM that is already running (a pool's, lib/pool), adopted for `cfg`
  // instead of booted: on success its state dir has become cfg.state_dir
  // (which must not exist before) and holds the SharedDir layout
  // (mounts/ and shared/, lib/sandbox/shared_dir.h) with virtiofsd
  // exporting shared/, its processes are in the pod's cgroup, and the agent
  // answered Check before the handover. Any error (no pool, an empty pool,
  // a VM that does not match cfg, a failed handover) means: boot cold with
  // Start; nothing of the attempt is left. The default (UNIMPLEMENTED) has
  // no ready VMs.
  virtual Result<std::unique_ptr<Vm>> TakeReady(const VmSettings& cfg) {
    (void)cfg;
    return Error::Unimplemented("this hypervisor has no ready VMs");
  }
};

std::unique_ptr<Hypervisor> NewQemu();

// What the host offers, as probed by ProbeHost(). Split out so the
// resolution rules are testable without the devices.
struct HostProbe {
  bool kvm_usable = false;     // /dev/kvm opens read-write
  bool cpu_has_virt = false;   // /proc/cpuinfo flags contain vmx or svm
  bool vhost_vsock = false;    // /dev/vhost-vsock exists
  uint64_t tsc_khz = 0;        // host TSC in kHz ("cpu MHz" of /proc/cpuinfo), 0 if unknown
};
HostProbe ProbeHost();

// auto -> KVM only when /dev/kvm opens read-write and /proc/cpuinfo has vmx
// or svm; else TCG. kKvm and kTcg are returned as they are.
Accel ResolveAccel(Accel requested, const HostProbe& host);
Accel ResolveAccel(Accel requested);
// auto -> vsock iff /dev/vhost-vsock exists; else serial.
Channel ResolveChannel(ChannelRequest requested, const HostProbe& host);
Channel ResolveChannel(ChannelRequest requested);

}  // namespace cask::hypervisor
