// TaskService: the containerd Task API in domain terms, for every container
// of one pod VM. The ttrpc adapter (task_adapter.h) converts protobuf
// requests into these calls and the results back; nothing here sees
// generated code.
//
// Model. The shim serves one pod: the first container created (the CRI
// sandbox, or a standalone container) boots a sandbox::Sandbox (one VM);
// the pod's other containers join it. Each container has an init process
// and any number of execs, each with an explicit ProcessState changed only
// through Transition() (process_state.h), so an illegal call fails with a
// precise message. The VM is destroyed when the last container is deleted.
//
// Per process, once created in the guest:
//  - a ProcessIoPump copies containerd's FIFOs to and from the agent;
//  - an exit watcher blocks in WaitProcess; on exit it waits for the output
//    to be fully delivered, records the exit (waking every Wait) and then
//    publishes TaskExit. If the VM dies, the agent connection closes and
//    every watcher records exit status 255.
// An OOM watcher per VM turns GetOOMEvent into TaskOOM.
//
// Event order: TaskCreate when Create returns; TaskStart/TaskExecStarted
// are published under the same lock the exit watcher takes before
// TaskExit, so no TaskExit precedes its start event; TaskDelete follows
// TaskExit.
//
// Thread safety: every method may be called concurrently from ttrpc
// handler threads. Wait blocks; State/Pids/Kill/Connect never wait behind a
// long Create or Start.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/config/config.h"
#include "lib/oci/spec.h"
#include "lib/sandbox/agent_client.h"
#include "lib/shim/events.h"
#include "lib/shim/grouping.h"
#include "lib/shim/process_state.h"
#include "lib/shim/publisher.h"

namespace cask::sandbox {
class Sandbox;
struct SandboxOptions;
class ProcessIoPump;
}  // namespace cask::sandbox

namespace cask::shim {

// Exit status containerd uses for an exit that was lost (VM gone).
inline constexpr uint32_t kLostExitStatus = 255;

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
  Result<sandbox::ContainerStats> Stats(const std::string& id);
  Result<ConnectInfo> Connect(const std::string& id);
  // True when no task is left: the shim may exit.
  bool Empty() const;

  // Tears everything down (kills the VM, undoes mounts); every blocked Wait
  // returns. Idempotent.
  void Stop();

 private:
  struct Process;
  struct Container;

  Result<Container*> FindContainer(const std::string& id);
  Result<Process*> FindProcess(const std::string& id, const std::string& exec_id);
  uint32_t VmmPid() const;
  // The pod VM, or UNAVAILABLE when there is none (any more).
  Result<std::shared_ptr<sandbox::Sandbox>> Vm() const;
  // Starts the pump and the exit watcher of a process now living in the guest.
  Status Attach(Container& c, Process& p, bool stdin);
  void WatchExit(std::shared_ptr<sandbox::Sandbox> vm, Container* c, Process* p);
  void WatchOom(std::shared_ptr<sandbox::Sandbox> vm);
  Status DestroySandboxLocked(std::unique_lock<std::mutex>& op_lock);
  void Publish(const TaskEvent& e);
  // Pause and Resume: check the transition, ask the agent, record the new
  // state, publish `event`.
  Status ChangeFreeze(const std::string& id, ProcessOp op,
                      Status (sandbox::AgentClient::*agent_call)(const std::string&), const TaskEvent& event);

  const Deps deps_;
  const Logger log_;

  // Serialises the calls that change the pod (Create, Start, Delete, Exec,
  // Pause, Resume, Update) across agent round trips.
  std::mutex op_mu_;
  // Held from "start the process" to "TaskStart published", and by the exit
  // watcher around "record exit, publish TaskExit".
  std::mutex event_mu_;
  // Guards everything below; never held across an agent call.
  mutable std::mutex mu_;
  std::condition_variable exit_cv_;

  // Shared so that calls outside op_mu_ keep it alive while they use it.
  std::shared_ptr<sandbox::Sandbox> sandbox_;
  std::string sandbox_id_;
  std::string sandbox_bundle_;  // bundle holding the VM record (vm_record.h)
  std::thread oom_thread_;
  std::map<std::string, std::unique_ptr<Container>> containers_;
  bool stopped_ = false;
};

}  // namespace cask::shim
