// Sandbox: one pod VM and its agent connection, seen from the host.
//
// Create() first asks the hypervisor for a ready VM (TakeReady: a pool's,
// lib/pool), whose directory becomes <state_dir>/<id>/ with its shared
// directory adopted and, for a pod with a network namespace, its NIC's TAP
// adopted into the pod's PodNetwork (moved into the namespace, wired as a
// cold TAP; the agent sets the pod's MAC on the guest NIC); when there is none
// (or anything about it fails, which is undone) it boots one cold:
// it makes <state_dir>/<id>/ with mounts/ (the shim's private tree
// of binds) and shared/ (its read-only virtio-fs export; see shared_dir.h), boots the VM through the hypervisor, connects to the agent,
// waits until it answers Check, has it mount the share at
// /run/cask/shared and the pod's /dev/shm tmpfs (pod_shm.h), and sets the
// guest clock, which a ClockSync then keeps in step (clock_sync.h). Any failure unwinds everything made so far (VM stopped,
// mounts undone, directories removed) and the error says which step failed,
// with the tail of the guest console when the VM died while booting.
//
// Containers are then driven through agent(): the host shares each
// container's rootfs (ShareRootfs) and host bind-mount sources
// (ShareMounts) into the shared directory and passes the guest paths to
// CreateContainer.
//
// Ownership: a Sandbox owns the VM (and, through it, QEMU and virtiofsd),
// the agent connection, every mount under shared/ and the state directory.
// Destroy() -- also run by the destructor -- releases all of them.
//
// Thread safety: agent() is thread-safe (see agent_client.h); Share*/
// Unshare*/Destroy may be called from several threads (they are serialised).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/config/config.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/net/pod_network.h"
#include "lib/net/port_forwarder.h"
#include "lib/oci/spec.h"
#include "lib/sandbox/agent_client.h"
#include "lib/sandbox/process_io.h"
#include "lib/sandbox/host_mounts.h"
#include "lib/sandbox/shared_dir.h"

namespace cask::sandbox {

// Guest mount point of the virtio-fs share and its tag (docs/architecture.md).
inline constexpr std::string_view kGuestSharedDir = "/run/cask/shared";
using hypervisor::kVirtiofsTag;  // one definition, in lib/hypervisor

struct SandboxOptions {
  // [A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 characters (it names a directory).
  std::string id;
  config::Config config;
  std::string hostname;     // guest hostname; empty: left as the agent sets it
  std::string resolv_conf;  // guest /etc/resolv.conf contents; empty: left alone
  uint64_t shm_bytes = 64ull << 20;  // size of the pod's /dev/shm tmpfs (pod_shm.h)
  Logger logger;
  // The pod's network namespace on the host (the sandbox spec's network
  // namespace path); empty: the VM gets no NIC. Its interfaces are joined
  // to TAPs (lib/net/pod_network.h) before the VM boots and configured in
  // the guest once the agent is up.
  std::string netns_path;
  // Added to the guest kernel command line.
  std::vector<std::string> extra_kernel_params;
  // Polled while waiting for the guest to boot: returning true abandons the
  // boot (CANCELLED), e.g. on ^C.
  std::function<bool()> cancelled;
  // The hypervisor backend; null means QEMU (hypervisor::NewQemu()).
  std::unique_ptr<hypervisor::Hypervisor> hypervisor;
  // The host mounts of the share and of containers' rootfs (host_mounts.h);
  // null means the kernel's (RealHostMounts()). Unit tests inject a
  // recording implementation to run without root.
  std::shared_ptr<HostMounts> mounts;
};

// Where the time of Create() went.
struct BootTiming {
  std::chrono::nanoseconds vm_start{0};     // Hypervisor::Start (processes spawned)
  std::chrono::nanoseconds agent_ready{0};  // from Start until Check answered
  std::chrono::nanoseconds setup{0};        // SetupSandbox
  std::chrono::nanoseconds total{0};        // the whole Create()
};

class ClockSync;

class Sandbox {
 public:
  static Result<std::unique_ptr<Sandbox>> Create(SandboxOptions opts);
  ~Sandbox();  // Destroy(), errors logged.
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  const std::string& id() const { return id_; }
  // <state_dir>/<id>
  const std::string& dir() const { return dir_; }
  const BootTiming& timing() const { return timing_; }
  const AgentInfo& agent_info() const { return agent_info_; }
  // True when the VM was a ready one (Hypervisor::TakeReady), not booted
  // for this sandbox.
  bool warm() const { return warm_; }

  AgentClient& agent() { return *agent_; }
  // The mounts this sandbox makes, also for its containers' rootfs.
  const std::shared_ptr<HostMounts>& mounts() const { return mounts_; }
  // The one stdio loop of the pod (process_io.h): every process's pump is
  // registered with it, so host threads do not grow with processes.
  ProcessIoLoop& io_loop() { return *io_loop_; }
  pid_t vmm_pid() const;
  // True once the VMM process has exited (e.g. the guest panicked).
  bool VmExited() const;
  // The last `max_bytes` bytes of the guest console, for error messages.
  std::string ConsoleTail(size_t max_bytes) const;

  // Bind-mounts `host_dir` onto mounts/<container_id>/rootfs (seen through
  // the export as shared/<container_id>/rootfs) and returns
  // its guest path, /run/cask/shared/<container_id>/rootfs. Once per
  // container (ALREADY_EXISTS after that, until UnshareRootfs).
  Result<std::string> ShareRootfs(const std::string& container_id, const std::string& host_dir,
                                  bool readonly = false);
  // Returns `spec` with each bind mount whose source is a host path
  // (a directory or a file such as /etc/resolv.conf) bound onto
  // mounts/<container_id>/mounts/<n> (read-only, recursively, when the
  // mount has the "ro" option) and its source rewritten to the guest
  // path. A missing source is INVALID_ARGUMENT naming the mount (checked
  // before anything is mounted); all or nothing; once per container
  // (ALREADY_EXISTS after that, until UnshareRootfs). Also gives a spec
  // without a seccomp profile the default one when runtime.default_seccomp
  // says so (oci::ApplyDefaultSeccomp), and replaces a /dev/shm bind of a
  // host directory (CRI's sandbox shm) with the pod's guest tmpfs
  // (UsePodShm): that host directory is never shared.
  Result<oci::Spec> ShareMounts(const std::string& container_id, oci::Spec spec);
  // Undoes ShareRootfs and ShareMounts of a container: unmounts (lazily if
  // busy) and removes mounts/<container_id>.
  Status UnshareRootfs(const std::string& container_id);

  // DestroySandbox RPC (best effort), closes the agent connection, stops the
  // VM, removes the pod network's TAPs and tc filters, unmounts everything under shared/ and removes the state directory.
  // Idempotent. agent() stays valid (closed) afterwards.
  Status Destroy();

 private:
  explicit Sandbox(SandboxOptions& opts);
  Status Boot(SandboxOptions& opts);
  // Takes a ready VM from the hypervisor (TakeReady) and finishes the boot
  // with it; on any error everything of the attempt is undone (UndoWarmBoot:
  // port forwarder, agent, VM, then the adopted TAP, share and directory)
  // and the caller boots cold.
  Status BootWarm(SandboxOptions& opts, const hypervisor::VmSettings& vc, std::chrono::steady_clock::time_point t0);
  void UndoWarmBoot();
  Status BootCold(SandboxOptions& opts, hypervisor::VmSettings& vc, std::chrono::steady_clock::time_point t0);
  // From the started VM to a set-up guest: agent connection, Check,
  // SetupSandbox, network, clock.
  Status FinishBoot(SandboxOptions& opts, std::chrono::steady_clock::time_point t_started,
                    std::chrono::steady_clock::time_point t0);
  // Sets the guest clock now and keeps it in step (clock_sync.h).
  Status StartClockSync();

  const std::string id_;
  const config::Config config_;
  const Logger log_;
  std::string dir_;
  BootTiming timing_;
  bool warm_ = false;
  AgentInfo agent_info_;

  const std::shared_ptr<HostMounts> mounts_;
  std::unique_ptr<hypervisor::Hypervisor> hypervisor_;
  std::unique_ptr<hypervisor::Vm> vm_;
  std::unique_ptr<net::PodNetwork> pod_network_;  // TAPs and tc redirects; closed after the VM stops
  // Port forwarding (lib/net/port_forwarder.h): the forwarder, and a
  // thread that keeps its ports equal to the guest's listening ones.
  std::unique_ptr<net::PortForwarder> forwarder_;
  std::thread forward_poll_;
  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  bool poll_stop_ = false;  // guarded by poll_mu_
  void StartPortForwarding();
  void StopPortForwarding();
  std::unique_ptr<AgentClient> agent_;
  std::unique_ptr<ProcessIoLoop> io_loop_;  // after agent_: destroyed before it
  std::unique_ptr<ClockSync> clock_sync_;  // stopped first by Destroy

  std::mutex mu_;  // guards shared_, dir_created_, destroyed_
  std::unique_ptr<Share> shared_;
  bool dir_created_ = false;
  bool destroyed_ = false;
};

}  // namespace cask::sandbox
