// Container: one container of a pod VM, seen from the host, and the one
// owner of everything it consists of there.
//
// Create() makes, in order, and a failure at any step undoes the earlier
// ones in reverse:
//   1. containerd's rootfs mounts on the host (RootfsMount), if any;
//   2. the rootfs and host bind sources shared into the VM
//      (Sandbox::ShareRootfs/ShareMounts);
//   3. the container in the guest (agent CreateContainer);
//   4. the init Process: its stdio pump (ProcessIoPump) and exit watch.
// The destructor unwinds the same steps in reverse: it removes the guest
// container if it is still there (when the agent still answers), waits for
// every watched exit to be delivered and stops every pump, unshares the
// rootfs from the VM and unmounts containerd's rootfs.
//
// Processes. The init process and every exec are Process objects with one
// lifecycle (process_state.h: created -> running -> stopped, paused while
// frozen) changed only through Transition(). Once a process lives in the
// guest, its exit is watched without a thread of its own: the sandbox's
// stdio loop (ProcessIoPump::WatchExit) learns of it from the agent's event
// stream, waits (at most drain_after_exit, a timer of the loop) for the
// output to reach the host fds, then, on the loop's exit thread, calls
// ContainerOptions::before_exit, records the exit (waking every WaitExit*)
// and calls ContainerOptions::on_exit. Host threads do not grow with
// processes.
//
// Output before exit (the contract the shim's events rely on, whatever
// moves the bytes): an exit is recorded, and so reported to anyone, only
// after the process's pump reported WaitDrainedFor == true, i.e. every byte
// the process wrote before it exited was written to the host fds (the
// FIFOs containerd reads), EOF included; only a guest that never ends its
// output (drain_after_exit) or a lost VM (drain_after_loss) cuts the wait
// short, with a warning. Exit times are the host's (Process::started_at
// <= exited_at); the guest's clock is never trusted for them. When
// the agent connection closes first, the exit is lost: it is recorded as
// kLostExitStatus (255, the VM died), or as kKilledExitStatus (137) after
// MarkVmKilled() (the host destroyed the VM on purpose).
//
// The guest is not trusted to finish anything: the calls that need it
// (Start, Signal, Remove, RemoveExec) return DEADLINE_EXCEEDED or
// UNAVAILABLE when it does not answer or never delivers an exit or EOF; the
// owner then destroys the VM (closing the agent, so every exit watch and pump
// ends at once) and destroys the Container. GuestDeadline bounds an agent
// call that has no deadline of its own.
//
// Thread safety: Process's methods may be called from any thread. A
// Container's methods may be called from any thread, but Start, AddExec,
// RemoveExec, Remove and destruction are expected to be serialised by the
// owner (the shim's operation lock, or one thread in `cask-runtime run`).
// before_exit and on_exit run on the sandbox's stdio exit thread (one per
// sandbox, shared by every process of every container; see process_io.h)
// with no Container or Process lock held; they may block, which delays the
// delivery of later exits of the pod, and must not destroy the Container
// or remove an exec (that waits for the delivery in progress).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/base/thread_annotations.h"
#include "lib/oci/spec.h"
#include "lib/sandbox/process_io.h"
#include "lib/sandbox/process_state.h"
#include "lib/sandbox/rootfs_mount.h"

namespace cask::sandbox {

class Sandbox;

// Exit status recorded when the exit was lost because the VM died.
inline constexpr uint32_t kLostExitStatus = 255;
// Exit status recorded when the host destroyed the VM (128 + SIGKILL).
inline constexpr uint32_t kKilledExitStatus = 137;

struct ExitInfo {
  uint32_t status = 0;  // exit code, or 128 + signal
  std::chrono::system_clock::time_point exited_at;
};

class Container;

class Process {
 public:
  const std::string& container_id() const { return container_id_; }
  const std::string& exec_id() const { return exec_id_; }  // "" for the init process
  bool is_init() const { return exec_id_.empty(); }
  // "task" or "exec", for messages.
  std::string_view what() const { return is_init() ? "task" : "exec"; }
  bool stdin_pumped() const;

  ProcessState state() const;
  // OK when `op` is legal now (the state is left alone), else the
  // Transition() error.
  Status Check(ProcessOp op) const;
  // The guest pid; 0 until the process exists in the guest.
  uint32_t pid() const;
  std::optional<ExitInfo> exit() const;
  // Host times (the guest's clock is never used): when the Process was
  // made, and when Start asked the guest to run it (created_at until then).
  std::chrono::system_clock::time_point created_at() const { return created_at_; }
  std::chrono::system_clock::time_point started_at() const;
  // Blocks until the exit is recorded, at most `timeout`.
  std::optional<ExitInfo> WaitExitFor(std::chrono::milliseconds timeout) const;
  ExitInfo WaitExit() const;

  // True once the process's exit is watched (it lives, or lived, in the
  // guest).
  bool watched() const;

  // SignalProcess in the guest (`all`: every process of the container, init
  // only). FAILED_PRECONDITION/NOT_FOUND from Transition when stopped or
  // deleted; otherwise the agent's answer, unchanged.
  Status Signal(int sig, bool all = false);

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

 private:
  friend class Container;
  Process(Container& owner, std::shared_ptr<Sandbox> sandbox, std::string exec_id);
  // Records the exit once (later calls return false) and wakes waiters.
  bool RecordExit(const ExitInfo& e);
  Result<ProcessState> Apply(ProcessOp op);
  void SetPid(uint32_t pid);
  void MarkStarted();
  void MarkWatched();
  // The exit watch finished (before_exit, record, on_exit all done).
  void MarkDelivered();
  // Blocks until a watched exit was delivered; at once when not watched.
  void WaitDelivered() const;

  const std::shared_ptr<Sandbox> sandbox_;  // Signal works after the Container is gone
  const std::string container_id_;
  const std::string exec_id_;
  const std::chrono::system_clock::time_point created_at_;

  mutable Mutex mu_;
  std::optional<std::chrono::system_clock::time_point> started_at_ GUARDED_BY(mu_);
  mutable std::condition_variable_any exit_cv_;  // exit_ or delivered_ changed
  ProcessState state_ GUARDED_BY(mu_) = ProcessState::kCreated;
  uint32_t pid_ GUARDED_BY(mu_) = 0;
  std::optional<ExitInfo> exit_ GUARDED_BY(mu_);
  bool stdin_pumped_ GUARDED_BY(mu_) = false;
  bool watched_ GUARDED_BY(mu_) = false;
  bool delivered_ GUARDED_BY(mu_) = false;

  // Owned by the Container (set before the exit is watched, released after
  // it was delivered); not guarded.
  std::optional<oci::Process> exec_spec_;  // execs, until started
  std::unique_ptr<ProcessIoPump> pump_;
};

struct ContainerOptions {
  std::string id;  // a valid container id (ValidateId)
  oci::Spec spec;  // validated, with a process
  // The rootfs directory on the host. With rootfs_mounts, they are mounted
  // onto it first (and owned); without, it must already hold the rootfs.
  std::string rootfs_dir;
  std::vector<MountSpec> rootfs_mounts;
  // Host ends of the init's stdio (see ProcessIoFds); an invalid stdin_fd
  // creates the init without a stdin.
  ProcessIoFds init_io;
  Logger log;
  // Called once per process when its exit is recorded, on the sandbox's
  // stdio exit thread (see the file comment), with no Container or Process
  // lock held.
  std::function<void(Process&, const ExitInfo&)> on_exit;
  // Called once per process whose exit the guest reported, after its
  // output drained and before the exit is recorded (so before any
  // WaitExit returns and before on_exit), on the same thread with no lock
  // held: the shim publishes an OOM kill here, ahead of the exit.
  std::function<void(Process&)> before_exit;
  // How long an exit waits for the process's output to reach the host.
  std::chrono::milliseconds drain_after_exit{10'000};
  std::chrono::milliseconds drain_after_loss{1'000};
};

class Container {
 public:
  static Result<std::unique_ptr<Container>> Create(std::shared_ptr<Sandbox> sandbox, ContainerOptions opts);
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  const std::string& id() const { return opts_.id; }
  Sandbox& sandbox() { return *sandbox_; }
  // The guest pid of the init process, as CreateContainer returned it.
  uint32_t guest_pid() const { return init_->pid(); }

  const std::shared_ptr<Process>& init() const { return init_; }
  // The process named by `exec_id` ("" = init); null if unknown.
  std::shared_ptr<Process> Find(const std::string& exec_id) const;
  // The execs, in id order.
  std::vector<std::shared_ptr<Process>> Execs() const;

  // Records an exec in the created state; nothing happens in the guest
  // until Start. ALREADY_EXISTS for a known id; FAILED_PRECONDITION unless
  // the init is running.
  Result<std::shared_ptr<Process>> AddExec(const std::string& exec_id, oci::Process spec);

  // Starts `p` (created -> running): StartContainer for the init; for an
  // exec ExecProcess, then its pump on `io` and its exit watch. Returns
  // the guest pid. A process that exits at once may already be stopped when
  // this returns. An exec the guest could not run is left created.
  Result<uint32_t> Start(Process& p, ProcessIoFds io);

  // created or stopped exec -> forgotten, also by the guest (RemoveProcess;
  // the guest not knowing it is fine). DEADLINE_EXCEEDED when its output
  // has not drained within `timeout`: the exec is kept.
  Status RemoveExec(const std::string& exec_id, std::chrono::milliseconds timeout);

  // Freezes / thaws the container (running <-> paused) through the agent.
  Status Pause();
  Status Resume();

  // Kills the container in the guest (RemoveContainer, force) and waits for
  // every process's exit and output, at most `timeout`. With the agent
  // closed, only waits (lost exits are recorded at once).
  // DEADLINE_EXCEEDED when the guest did not deliver them: destroy the VM,
  // then this Container.
  Status Remove(std::chrono::milliseconds timeout);

  // The host is destroying the VM: exits lost from now on are recorded as
  // kKilledExitStatus, not kLostExitStatus.
  void MarkVmKilled() { vm_killed_.store(true); }

 private:
  Container(std::shared_ptr<Sandbox> sandbox, ContainerOptions opts);
  Status Build(bool& guest_created);
  // Starts the pump on `io` and the exit watch of `p`, now in the guest.
  Status Attach(const std::shared_ptr<Process>& p, ProcessIoFds io);
  // The exit watch's end (on the stdio exit thread).
  void DeliverExit(Process& p, ProcessIoPump::ExitReport rep);
  // Waits for the exit delivery and stops the pump of `p` (see the
  // destructor).
  void Release(Process& p);

  const std::shared_ptr<Sandbox> sandbox_;
  ContainerOptions opts_;
  const Logger log_;
  std::atomic<bool> vm_killed_{false};

  // Creation steps, undone in reverse by the destructor.
  RootfsMount rootfs_;
  bool shared_ = false;
  bool guest_created_ = false;
  bool guest_removed_ = false;

  std::shared_ptr<Process> init_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Process>> execs_ GUARDED_BY(mu_);
};

// Runs `on_expiry` once, on a thread of its own, unless destroyed within
// `timeout`. Bounds a host operation that needs the guest: on expiry the
// owner destroys the VM, which fails the pending agent call. The destructor
// waits for a running on_expiry to finish.
class GuestDeadline {
 public:
  GuestDeadline(std::chrono::milliseconds timeout, std::function<void()> on_expiry);
  ~GuestDeadline();
  GuestDeadline(const GuestDeadline&) = delete;
  GuestDeadline& operator=(const GuestDeadline&) = delete;
  // True once on_expiry was started.
  bool expired() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool expired_ = false;
  std::thread thread_;
};

}  // namespace cask::sandbox
