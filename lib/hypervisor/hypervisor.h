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
#include <string>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/config/config.h"

namespace cask::hypervisor {

// The channel actually used (after resolving config "auto").
enum class Channel { kSerial, kVsock };

// "serial" / "vsock": the word of the kernel parameter cask.channel=.
std::string_view ChannelWord(Channel c);

// Guest-side names shared with the agent (docs/architecture.md).
inline constexpr const char* kAgentPortName = "cask.agent";  // virtio-serial port
inline constexpr uint32_t kAgentVsockPort = 1024;
inline constexpr const char* kVirtiofsTag = "cask";

struct VmConfig {
  std::string id;                 // sandbox id, used in names (QEMU -name cask-<id>)
  // Per-VM directory for sockets and logs. Start creates it if absent; Stop
  // removes what Start put there, and the directory itself if Start created
  // it or it is left empty. Must be absolute.
  std::string state_dir;
  config::HypervisorConfig hv;
  config::AgentChannel channel = config::AgentChannel::kAuto;
  std::string shared_dir;         // host dir exported over virtio-fs with tag "cask" (empty = none)
  bool debug = false;             // keep console log verbose (no "quiet"), cask.debug=1
  // Guest console lines are logged here ("guest console", line=...), at a
  // bounded rate (see qemu.cc); the default discards them.
  Logger console_logger;
  std::vector<std::string> extra_kernel_params;
};

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
  // removes the sockets and logs and the state dir (see VmConfig). Refuses
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
  virtual Result<std::unique_ptr<Vm>> Start(const VmConfig& cfg) = 0;
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
config::Accel ResolveAccel(config::Accel requested, const HostProbe& host);
config::Accel ResolveAccel(config::Accel requested);
// auto -> vsock iff /dev/vhost-vsock exists; else serial.
Channel ResolveChannel(config::AgentChannel requested, const HostProbe& host);
Channel ResolveChannel(config::AgentChannel requested);

}  // namespace cask::hypervisor
