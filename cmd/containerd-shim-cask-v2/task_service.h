// TaskService: the containerd Task API in domain terms, for every container
// of one pod VM. The ttrpc adapter (task_adapter.h) converts protobuf
// requests into these calls and the results back; nothing here sees
// generated code.
//
// Model. The shim serves one pod: the first container created (the CRI
// sandbox, or a standalone container) boots a sandbox::Sandbox (one VM);
// the pod's other containers join it. Each task is a sandbox::Container
// (lib/sandbox/container.h), which owns the rootfs mount, the share, the
// guest container and each process with its pump, exit watch and state;
// this service keeps the bookkeeping (bundles, stdio paths, which tasks
// exist) and turns lifecycle facts into containerd events. The VM is
// destroyed when the last container is deleted.
//
// Teardown does not need the guest. Kill, Delete and Stop (Shutdown, the
// shim's SIGTERM) wait at most Config::agent.teardown_timeout_ms for the
// agent; then the VM is destroyed without it (the agent connection closed,
// QMP quit, then SIGKILL) from a thread that holds no lock of this service,
// every task of the pod is reported exited with status 137, and the
// deletion goes on. Delete never waits on a watcher that could block: it
// joins watchers only after their exit was delivered or the VM is gone.
//
// Error codes containerd sees are decided here, once: NOT_FOUND only for an
// unknown task or exec id (and containerd's "process already finished" on
// Kill of a stopped process); a program the guest could not execute is
// FAILED_PRECONDITION with the reason's marker (lib/base/error.h); NOT_FOUND
// or ALREADY_EXISTS from the guest or from the host's files become
// FAILED_PRECONDITION or INVALID_ARGUMENT; the guest's messages are cut to
// kMaxGuestMessage bytes.
//
// OOM: one watcher per VM turns GetOOMEvent into TaskOOM, through an
// OomEventFilter (only ids of tasks of this shim, coalesced, rate-limited)
// and pacing of the calls themselves, so a flooding guest costs little CPU.
// The watcher may not have seen a kill when the container's init exits: the
// exit of an init first reads the guest cgroup's oom_kill count and
// publishes TaskOOM for kills not yet published, before the exit is
// recorded (Wait returns) and before TaskExit.
//
// Event order: TaskCreate when Create returns; TaskStart/TaskExecStarted
// are published under event_mu_, which the exit callback takes before
// TaskExit, so no TaskExit precedes its start event; TaskOOM for a kill that
// ended an init precedes its TaskExit; TaskDelete follows TaskExit.
//
// Output before exit: Wait returns and TaskExit is published only once the
// process's output reached the stdout/stderr FIFOs (sandbox::Container's
// contract: the exit is recorded after the pump drained, bounded by
// agent.teardown_timeout_ms for a guest that never ends its output). Any
// rewrite of the I/O pump must keep WaitDrainedFor meaning "every byte the
// process wrote before its exit is in the host fds".
//
// Times: created, started and exited times are the host's (the guest clock
// is set from the host but never trusted for ordering); exited_at is never
// before the start.
//
// Thread safety: every method may be called concurrently from ttrpc
// handler threads. Wait blocks; State/Pids/Kill/Connect never wait behind a
// long Create or Start. Locks, in acquisition order: op_mu_, event_mu_,
// mu_ (annotated below).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
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
#include "lib/config/config.h"
#include "lib/oci/spec.h"
#include "lib/sandbox/agent_client.h"
#include "lib/sandbox/vm_settings.h"
#include "lib/shim/events.h"
#include "lib/shim/grouping.h"
#include "cmd/containerd-shim-cask-v2/process_state.h"
#include "lib/shim/publisher.h"

namespace cask::sandbox {
class Sandbox;
struct SandboxOptions;
struct ContainerOptions;
class Container;
class Process;
struct ExitInfo;
}  // namespace cask::sandbox

namespace cask::shim {

// Exit status containerd uses for an exit that was lost (VM gone).
inline constexpr uint32_t kLostExitStatus = 255;
// Exit status of the tasks of a VM the shim destroyed (128 + SIGKILL).
inline constexpr uint32_t kKilledExitStatus = 137;
// Bound on a guest-supplied message before it is logged or returned.
inline constexpr size_t kMaxGuestMessage = 1024;
// Pacing of GetOOMEvent calls: each call starts at least this long after
// the previous one started, so a guest answering at once in a loop costs
// at most one call (and its payload) per interval.
inline constexpr std::chrono::milliseconds kOomPollInterval{100};

struct StdioPaths {
  std::string stdin_path, stdout_path, stderr_path;  // empty: none
  bool terminal = false;
};

struct CreateTaskParams {
  std::string id;
  std::string bundle;
  std::vector<RootfsMount> rootfs;
  StdioPaths stdio;
  std::string checkpoint;
  // From runtimeoptions.v1.Options.config_path; empty: the default file.
  std::string config_path;
  // From runc's options (containerd.runc.v1.Options or
  // containerd.linux.runc.CreateOptions), which containerd 1.6's Go client
  // sends to any runtime. io_uid/io_gid: the owner given to the stdio
  // FIFOs (0:0 leaves them alone). shim_cgroup: a cgroup path (below the
  // cgroup mount) the shim joins before it boots the pod VM, so that QEMU
  // and virtiofsd start there; a cgroup that does not exist fails Create.
  uint32_t io_uid = 0, io_gid = 0;
  std::string shim_cgroup;
  // runc options that were set but mean nothing for a VM (logged at debug).
  std::vector<std::string> ignored_options;
};

struct ExecParams {
  std::string id;
  std::string exec_id;
  StdioPaths stdio;
  std::string process_json;  // an OCI "process" object
};

struct ExitInfo {
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  Timestamp exited_at;
};

struct ProcessStatus {
  std::string id, exec_id, bundle;
  uint32_t pid = 0;
  ProcessState state = ProcessState::kCreated;
  StdioPaths stdio;
  std::optional<ExitInfo> exit;
};

struct PidInfo {
  uint32_t pid = 0;
  std::string exec_id;  // set for exec processes
};

struct ConnectInfo {
  uint32_t shim_pid = 0;
  uint32_t task_pid = 0;
};

class TaskService {
 public:
  using SandboxFactory =
      std::function<Result<std::unique_ptr<sandbox::Sandbox>>(sandbox::SandboxOptions)>;
  using ConfigLoader = std::function<Result<config::Config>(const std::string& path)>;

  struct Deps {
    std::string ns;
    Logger log;
    // Where events go (the EventPublisher in the shim); may be empty.
    std::function<void(const TaskEvent&)> publish;
    // Defaults: sandbox::Sandbox::Create and config::LoadFile/LoadDefault.
    SandboxFactory create_sandbox;
    ConfigLoader load_config;
  };

  explicit TaskService(Deps deps);
  ~TaskService();  // Stop()
  TaskService(const TaskService&) = delete;
  TaskService& operator=(const TaskService&) = delete;

  Result<uint32_t> Create(const CreateTaskParams& p);
  Result<uint32_t> Start(const std::string& id, const std::string& exec_id);
  Result<ExitInfo> Delete(const std::string& id, const std::string& exec_id);
  Status Exec(const ExecParams& p);
  Result<ProcessStatus> State(const std::string& id, const std::string& exec_id);
  Result<std::vector<PidInfo>> Pids(const std::string& id);
  Status Kill(const std::string& id, const std::string& exec_id, uint32_t signal, bool all);
  Result<ExitInfo> Wait(const std::string& id, const std::string& exec_id);
  Status Pause(const std::string& id);
  Status Resume(const std::string& id);
  Status CloseIo(const std::string& id, const std::string& exec_id);
  Status ResizePty(const std::string& id, const std::string& exec_id, uint32_t width, uint32_t height);
  Status Update(const std::string& id, const std::string& resources_json);
  Result<sys::CgroupStats> Stats(const std::string& id);
  Result<ConnectInfo> Connect(const std::string& id);
  // True when no task is left: the shim may exit.
  bool Empty() const;

  // Tears everything down (kills the VM, undoes mounts); every blocked Wait
  // returns. Idempotent.
  void Stop();

 private:
  struct Task;

  Result<Task*> FindTask(const std::string& id) REQUIRES(mu_);
  Result<std::shared_ptr<sandbox::Process>> FindProcess(const std::string& id, const std::string& exec_id)
      REQUIRES(mu_);
  // The container of task `id`; it stays alive while op_mu_ is held (tasks
  // are only removed under it).
  Result<sandbox::Container*> FindContainer(const std::string& id) REQUIRES(op_mu_) EXCLUDES(mu_);
  uint32_t VmmPid() const REQUIRES(mu_);
  // The pod VM, or UNAVAILABLE when there is none (any more).
  Result<std::shared_ptr<sandbox::Sandbox>> Vm() const EXCLUDES(mu_);
  std::chrono::milliseconds TeardownTimeout() const EXCLUDES(mu_);
  // The pid containerd sees for `p`: the VMM's for an init, the guest's
  // for an exec.
  uint32_t ReportedPid(const sandbox::Process& p) EXCLUDES(mu_);
  // OnExit and BeforeExit run on the pod's stdio exit thread (one per pod,
  // lib/sandbox/process_io.h), one exit after another, with no lock of the
  // Container or of this service held on entry.
  void OnExit(const sandbox::Process& p, const sandbox::ExitInfo& e) EXCLUDES(event_mu_, mu_);
  void WatchOom(std::shared_ptr<sandbox::Sandbox> vm);
  // Destroys the VM without the guest's help (see the class comment). Takes
  // no lock besides mu_ briefly; safe from any thread, idempotent.
  void TerminateVm(const std::string& why) EXCLUDES(mu_);
  // Runs `call` (which needs the guest); if it has not returned after the
  // teardown timeout, the VM is destroyed, which ends it.
  Status WithTeardownDeadline(const std::string& what, const std::function<Status()>& call) EXCLUDES(mu_);
  Status DestroySandboxLocked() REQUIRES(op_mu_) EXCLUDES(mu_);
  // Create's steps (CreateLocked runs them in order).
  struct CreatePlan;
  Result<uint32_t> CreateLocked(const CreateTaskParams& p) REQUIRES(op_mu_);
  // Reads and checks everything (spec, grouping, config, VM size, runc
  // options) before the first side effect.
  Result<CreatePlan> PlanCreate(const CreateTaskParams& p) REQUIRES(op_mu_);
  // The Container's options: rootfs, stdio (opened, owned by io_uid/gid).
  Result<sandbox::ContainerOptions> ContainerOptionsFor(const CreateTaskParams& p, CreatePlan& plan,
                                                        const Logger& log) REQUIRES(op_mu_);
  // Joins the shim cgroup, boots the pod VM, records it, starts the OOM watcher.
  Result<std::shared_ptr<sandbox::Sandbox>> BootPodVm(const CreateTaskParams& p, const CreatePlan& plan,
                                                      const Logger& log) REQUIRES(op_mu_) EXCLUDES(mu_);
  // Stores the task and publishes TaskCreate; returns the pid containerd sees.
  uint32_t RegisterTask(const CreateTaskParams& p, std::unique_ptr<Task> t) REQUIRES(op_mu_) EXCLUDES(mu_);
  // ContainerOptions::before_exit: publishes an OOM kill ahead of the exit.
  void BeforeExit(sandbox::Process& p) EXCLUDES(mu_);
  void Publish(const TaskEvent& e);

  const Deps deps_;
  const Logger log_;

  // Serialises the calls that change the pod (Create, Start, Delete, Exec,
  // Pause, Resume, Update) across agent round trips.
  Mutex op_mu_ ACQUIRED_BEFORE(event_mu_);
  // Held from "start the process" to "TaskStart published", and by the exit
  // callback around "publish TaskExit".
  Mutex event_mu_ ACQUIRED_BEFORE(mu_);
  // Guards everything below; never held across an agent call.
  mutable Mutex mu_;
  std::condition_variable_any exit_cv_;

  // Shared so that calls outside op_mu_ keep it alive while they use it.
  std::shared_ptr<sandbox::Sandbox> sandbox_ GUARDED_BY(mu_);
  std::string sandbox_id_ GUARDED_BY(mu_);
  std::string sandbox_bundle_ GUARDED_BY(mu_);  // bundle holding the VM record (vm_record.h)
  std::chrono::milliseconds teardown_timeout_ GUARDED_BY(mu_){10'000};
  bool vm_killed_ GUARDED_BY(mu_) = false;      // lost exits are reported as 137
  bool vm_terminated_ GUARDED_BY(mu_) = false;  // TerminateVm ran
  std::map<std::string, std::unique_ptr<Task>> tasks_ GUARDED_BY(mu_);
  // TaskOOM events published per task (compared with the guest's oom_kill).
  std::map<std::string, uint64_t> oom_published_ GUARDED_BY(mu_);
  bool stopped_ GUARDED_BY(mu_) = false;
  std::thread oom_thread_;  // started and joined under op_mu_
};

}  // namespace cask::shim
