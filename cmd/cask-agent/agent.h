// The agent's state: containers and their processes inside the pod VM, and
// what the host may do with them (proto/agent.proto, in domain types; the
// ttrpc adapter is service.h).
//
// Lifecycles. A container is created (init pending before execve) ->
// running (StartContainer) -> stopped (init reaped) -> removed. A process
// (the init or an exec) is created -> running -> stopped; its exit comes
// from the Reaper, its output from a StreamPump per stream.
//
// Ownership. The Agent owns every Container (lib/container), every stdio fd
// and pump, and the pending processes until they start. It never waits for
// a child: the Reaper (owned by main) delivers exits.
//
// Blocking calls (WaitProcess, ReadStream, WriteStdin, NextOomEvent) honour
// their WaitLimits; CancelBlockingCalls() ends every blocked call (used when
// the host connection drops, so the server can finish the connection).
//
// Thread safety: every method may be called from any thread. Operations on
// one container are serialised; calls on different containers, and blocking
// calls, run concurrently.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cmd/cask-agent/oom.h"
#include "cmd/cask-agent/pod_namespaces.h"
#include "cmd/cask-agent/reaper.h"
#include "cmd/cask-agent/stdio.h"
#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/container/container.h"

namespace cask::agent {

struct AgentOptions {
  // Parent of container cgroups (docs/architecture.md).
  std::string cgroup_root = "/sys/fs/cgroup/cask";
  // Where SetupSandbox writes resolv.conf.
  std::string etc_dir = "/etc";
  // Per output stream: how much the agent buffers before back-pressure.
  size_t stream_buffer_bytes = 1 << 20;
  // Run by DestroySandbox after `power_off_delay` (on its own thread) so the
  // reply reaches the host first. Empty: no power-off (tests).
  std::function<void()> power_off;
  std::chrono::milliseconds power_off_delay{300};
};

struct AgentInfo {
  std::string version;
  std::string kernel_release;
  uint64_t uptime_ns = 0;
};

struct GuestMount {
  std::string source;
  std::string target;
  std::string fstype;
  std::vector<std::string> options;
};

struct SandboxSetup {
  std::string sandbox_id;
  std::string hostname;
  std::string resolv_conf;  // empty: leave /etc/resolv.conf alone
  std::vector<GuestMount> mounts;
};

struct ProcessExit {
  int status = 0;
  uint64_t exited_at_ns = 0;
};

enum class StreamKind { kStdout, kStderr };

class Agent {
 public:
  // `reaper` and `oom` are started by the caller and outlive the Agent.
  Agent(AgentOptions opts, Reaper* reaper, OomWatcher* oom, Logger log);
  ~Agent();  // Kills and destroys every container; joins the power-off thread.
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  AgentInfo Check() const;
  Status SetupSandbox(const SandboxSetup& setup);
  // Kills and destroys every container, then schedules the power-off.
  Status DestroySandbox();

  // Returns the pid of the pending init.
  Result<pid_t> CreateContainer(const std::string& id, std::string_view spec_json, const std::string& rootfs,
                                bool open_stdin);
  Result<pid_t> StartContainer(const std::string& id);
  Status RemoveContainer(const std::string& id, bool force);

  Result<pid_t> ExecProcess(const std::string& id, const std::string& exec_id, std::string_view process_json,
                            bool open_stdin);
  Status SignalProcess(const std::string& id, const std::string& exec_id, int sig, bool all);
  Result<ProcessExit> WaitProcess(const std::string& id, const std::string& exec_id, const WaitLimits& limits);
  Result<std::vector<pid_t>> ListProcesses(const std::string& id);
  // Forgets a stopped exec (exit status, stdio buffers and fds); its id can
  // be reused. NOT_FOUND if unknown, FAILED_PRECONDITION while it runs,
  // INVALID_ARGUMENT for an empty exec id (the init goes with the container).
  Status RemoveProcess(const std::string& id, const std::string& exec_id);

  // Writes all of `data` unless the limits end the call first; returns the
  // bytes written.
  Result<size_t> WriteStdin(const std::string& id, const std::string& exec_id, std::string_view data,
                            const WaitLimits& limits);
  Status CloseStdin(const std::string& id, const std::string& exec_id);
  // At most min(max_len, 1 MiB) bytes (max_len 0 means the cap).
  Result<StreamChunk> ReadStream(const std::string& id, const std::string& exec_id, StreamKind kind,
                                 size_t max_len, const WaitLimits& limits);
  Status ResizeTty(const std::string& id, const std::string& exec_id, uint32_t rows, uint32_t cols);

  Result<container::CgroupStats> StatsContainer(const std::string& id);
  Status PauseContainer(const std::string& id);
  Status ResumeContainer(const std::string& id);
  Status UpdateContainer(const std::string& id, std::string_view resources_json);
  Result<std::string> NextOomEvent(const WaitLimits& limits);

  // WaitLimits for a call: `deadline` plus cancellation by CancelBlockingCalls().
  WaitLimits Limits(std::optional<std::chrono::steady_clock::time_point> deadline) const;
  // Ends every blocked call with UNAVAILABLE.
  void CancelBlockingCalls();

  static constexpr size_t kMaxReadLen = 1 << 20;

 private:
  struct Process;
  struct ContainerRec;

  Result<std::shared_ptr<ContainerRec>> FindContainer(const std::string& id) const;
  Result<std::shared_ptr<Process>> FindProcess(const std::string& id, const std::string& exec_id) const;
  // Registers `pending` with the reaper and starts its stdio pumps.
  Result<std::shared_ptr<Process>> AdoptProcess(const std::string& id, const std::string& exec_id, uint64_t mark,
                                                container::PendingProcess pending, container::ProcessIo io,
                                                bool terminal);
  // Start() of a pending process; on an exec error waits (bounded) for the
  // reaper so the process is already stopped when the host hears of it.
  Result<pid_t> StartProcess(Process& p);
  // Drops a container's processes' stdio and pending state (after Destroy).
  void CloseProcesses(ContainerRec& rec);
  Status DestroyContainer(ContainerRec& rec);
  // Takes every container out of the table, kills and destroys each one not
  // already removed; a failure is logged and the next one is tried.
  void DestroyAllContainers();

  const AgentOptions opts_;
  Reaper* const reaper_;
  OomWatcher* const oom_;
  const Logger log_;
  const std::chrono::steady_clock::time_point started_;

  mutable std::mutex mu_;  // guards containers_, creating_, and each rec's execs
  std::map<std::string, std::shared_ptr<ContainerRec>> containers_;
  std::set<std::string> creating_;
  PodNamespaces pods_;  // pod sandboxes, to map spec namespace paths
  std::atomic<uint64_t> cancel_epoch_{0};

  std::mutex power_mu_;
  std::thread power_off_thread_;
};

}  // namespace cask::agent
