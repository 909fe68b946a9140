// The agent's state: containers and their processes inside the pod VM, and
// what the host may do with them (proto/agent.proto, in domain types; the
// ttrpc adapter is service.h).
//
// Lifecycles. Containers and processes share one State enum and one
// transition function (Transition): created -> running -> stopped ->
// removed, with created -> stopped (killed before it started) and any ->
// removed (forced removal) as the only shortcuts. A container is created
// (init pending before execve), running after StartContainer, stopped once
// its init was reaped, removed by RemoveContainer. A process (the init or an
// exec) is created, running once started, stopped when the Reaper delivers
// its exit, removed by RemoveProcess; its output comes from a StreamPump per
// stream, all pumps sharing one IoLoop thread.
//
// Events. Exits, OOM kills and output reach the host through one long poll
// per connection (GetEvents): the pumps, the reaper and the OOM watcher mark
// a process (or the OOM queue) ready and wake the poll, which gathers a
// batch. Output is sent within per-stream credit (GrantOutput); a batch of
// little output waits a bounded time for more (ReplyCoalescer), so small
// writes do not cost a reply each. The legacy
// blocking calls (WaitProcess, ReadStream, NextOomEvent) still work.
//
// Ownership. The Agent owns every Container (lib/container), every stdio fd
// and pump, and the pending processes until they start. It never waits for
// a child: the Reaper (owned by main) delivers exits.
//
// Blocking calls (GetEvents, WaitProcess, ReadStream, NextOomEvent) honour
// their WaitLimits; CancelBlockingCalls() ends every blocked call (used when
// the host connection drops, so the server can finish the connection).
// WriteStdin never blocks.
//
// Thread safety: every method may be called from any thread. Operations on
// one container are serialised (its op_mu); calls on different containers,
// and blocking calls, run concurrently. Lock order: op_mu, then mu_, then
// ev_mu_, then a process's mu, then a stream buffer's lock (annotated below
// where the analysis can check it).
#pragma once

#include <sys/types.h>
#include <time.h>

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
#include "cmd/cask-agent/reply_coalescer.h"
#include "cmd/cask-agent/stdio.h"
#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/base/thread_annotations.h"
#include "lib/container/container.h"

namespace cask::agent {

struct AgentOptions {
  // Parent of container cgroups (docs/architecture.md).
  std::string cgroup_root = "/sys/fs/cgroup/cask";
  // Where SetupSandbox writes resolv.conf.
  std::string etc_dir = "/etc";
  // Per output stream: how much the agent buffers before back-pressure.
  size_t stream_buffer_bytes = 1 << 20;
  // Size given to each output pipe (StreamPump::Start): a bulk writer then
  // blocks once per MiB rather than every 64 KiB (each block and wake-up is
  // a round of emulated context switches under TCG).
  size_t stream_pipe_bytes = 1 << 20;
  // After a short read of a process's pipe or pty, its fd is watched again
  // only this much later (StreamPump::Start): a writer of small chunks then
  // costs one wake-up of the agent per delay rather than one per write.
  std::chrono::microseconds stream_short_read_delay{4000};
  // How long GetEvents holds a reply of little output for more to join it
  // (reply_coalescer.h). min_bytes is capped at half a stream's buffer.
  ReplyCoalescer::Options reply_coalescing;
  // Run by DestroySandbox after `power_off_delay` (on its own thread) so the
  // reply reaches the host first. Empty: no power-off (tests).
  std::function<void()> power_off;
  std::chrono::milliseconds power_off_delay{300};
  // Sets the wall clock; empty: clock_settime(CLOCK_REALTIME). Tests
  // replace it.
  std::function<Status(const struct timespec&)> set_clock;
};

struct AgentInfo {
  std::string version;
  std::string kernel_release;
  uint64_t uptime_ns = 0;
  uint32_t threads = 0;    // of the agent process
  uint64_t rss_bytes = 0;  // of the agent process
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

// The lifecycle of containers and processes (see the file comment).
enum class State { kCreated, kRunning, kStopped, kRemoved };
const char* StateName(State s);
// Moves `*state` to `to` when the lifecycle allows it; otherwise
// FAILED_PRECONDITION "cannot <verb> <what> in <state> state" and *state
// stays as it was.
Status Transition(State* state, State to, std::string_view what);

// Output credit a stream starts with (proto/agent.proto: kInitialOutputCredit).
inline constexpr size_t kInitialOutputCredit = 64 * 1024;
// Credit of one stream never grows beyond this, whatever the host grants.
inline constexpr size_t kMaxOutputCredit = 16 << 20;

// Output of one stream in a batch: a stream's output may come as several
// events in one batch (one per buffered block, in order), which spares
// copying blocks together.
struct OutputEvent {
  std::string container_id;
  std::string exec_id;
  StreamKind stream = StreamKind::kStdout;
  ByteBlock data;
  bool eof = false;
};

struct ExitReport {
  std::string container_id;
  std::string exec_id;
  ProcessExit exit;
};

// One GetEvents reply. seq 0: nothing to report.
struct EventBatch {
  uint64_t seq = 0;
  std::vector<OutputEvent> output;
  std::vector<ExitReport> exits;
  std::vector<std::string> oom_container_ids;
  bool empty() const { return output.empty() && exits.empty() && oom_container_ids.empty(); }
};

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
  // Sets CLOCK_REALTIME (the host's clock, in ns since the epoch; > 0) via
  // AgentOptions::set_clock. INVALID_ARGUMENT for a time <= 0.
  Status SetTime(int64_t realtime_ns);

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

  // Writes what the stdin pipe takes now, without blocking; returns the
  // bytes written (0 when the pipe is full).
  Result<size_t> WriteStdin(const std::string& id, const std::string& exec_id, std::string_view data);
  Status CloseStdin(const std::string& id, const std::string& exec_id);
  // At most min(max_len, 1 MiB) bytes (max_len 0 means the cap).
  Result<StreamChunk> ReadStream(const std::string& id, const std::string& exec_id, StreamKind kind,
                                 size_t max_len, const WaitLimits& limits);
  Status ResizeTty(const std::string& id, const std::string& exec_id, uint32_t rows, uint32_t cols);

  Result<sys::CgroupStats> StatsContainer(const std::string& id);
  Status PauseContainer(const std::string& id);
  Status ResumeContainer(const std::string& id);
  Status UpdateContainer(const std::string& id, std::string_view resources_json);
  Result<std::string> NextOomEvent(const WaitLimits& limits);

  // The event stream (proto/agent.proto, GetEvents). `ack` is the seq of the
  // last batch the host received: if it is not the latest batch, that batch
  // is returned again. Otherwise waits up to `wait` (capped at 60 s, and
  // ending early on the limits or when a newer GetEvents arrives) for
  // something to report and returns it as a new batch, or an empty one
  // (seq 0). At most `max_output` output bytes per batch (capped at 1 MiB).
  Result<std::shared_ptr<const EventBatch>> GetEvents(uint64_t ack, std::chrono::milliseconds wait, size_t max_output,
                               const WaitLimits& limits);
  // Adds `bytes` of credit to an output stream or, when `total` is not 0,
  // raises its credit to `total` minus the bytes it sent so far (an
  // idempotent grant); capped at kMaxOutputCredit either way.
  Status GrantOutput(const std::string& id, const std::string& exec_id, StreamKind stream, uint32_t bytes,
                     uint64_t total = 0);

  // WaitLimits for a call: `deadline` plus cancellation by CancelBlockingCalls()
  // and, when given, by `connection_gone` (the call's connection ended: a
  // call that starts after the cancellation ends at once too).
  WaitLimits Limits(std::optional<std::chrono::steady_clock::time_point> deadline,
                    std::shared_ptr<const std::atomic<bool>> connection_gone = nullptr) const;
  // Ends every blocked call with UNAVAILABLE.
  void CancelBlockingCalls();

  static constexpr size_t kMaxReadLen = 1 << 20;
  static constexpr std::chrono::milliseconds kMaxEventWait{60'000};
  // Process ids sent per batch: bounds a batch however many processes
  // exited at once (the rest follow in the next batch).
  static constexpr size_t kMaxExitsPerBatch = 4096;
  static constexpr size_t kMaxOomPerBatch = 256;

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
  // Moves a container whose init was reaped to stopped. Call under op_mu.
  void SyncContainerState(ContainerRec& rec);
  // Queues `p` for the next event batch and wakes GetEvents.
  void MarkReady(const std::shared_ptr<Process>& p) EXCLUDES(ev_mu_);
  void MarkOomReady() EXCLUDES(ev_mu_);
  EventBatch BuildBatchLocked(size_t max_output) REQUIRES(ev_mu_);
  // What BuildBatchLocked(max_output) would carry now, for the coalescer:
  // output bytes within credit, and whether anything urgent is queued.
  ReplyCoalescer::Pending PendingLocked(size_t max_output) REQUIRES(ev_mu_);
  // Takes every container out of the table, kills and destroys each one not
  // already removed; a failure is logged and the next one is tried.
  void DestroyAllContainers();

  const AgentOptions opts_;
  Reaper* const reaper_;
  OomWatcher* const oom_;
  const Logger log_;
  const std::chrono::steady_clock::time_point started_;

  // The one stdio thread; declared first so that it outlives every pump.
  Result<std::unique_ptr<IoLoop>> io_loop_;

  // Guards the container table and each ContainerRec's execs (which the
  // analysis cannot name from ContainerRec).
  mutable Mutex mu_ ACQUIRED_BEFORE(ev_mu_);
  std::map<std::string, std::shared_ptr<ContainerRec>> containers_ GUARDED_BY(mu_);
  std::set<std::string> creating_ GUARDED_BY(mu_);
  PodNamespaces pods_;  // pod sandboxes, to map spec namespace paths
  std::atomic<uint64_t> cancel_epoch_{0};

  // The event stream. Taken before a process's mu (BuildBatchLocked reads
  // processes); MarkReady is called with no process lock held.
  Mutex ev_mu_;
  std::condition_variable_any ev_cv_;
  std::vector<std::shared_ptr<Process>> ready_ GUARDED_BY(ev_mu_);  // each process at most once
  bool oom_ready_ GUARDED_BY(ev_mu_) = false;
  uint64_t poll_gen_ GUARDED_BY(ev_mu_) = 0;  // the newest GetEvents
  // Holds replies of little output for a bounded time (GetEvents).
  ReplyCoalescer coalescer_ GUARDED_BY(ev_mu_);
  // Kept until acked; shared with the reply being sent (never copied).
  std::shared_ptr<const EventBatch> last_batch_ GUARDED_BY(ev_mu_) = std::make_shared<const EventBatch>();

  std::mutex power_mu_;
  std::thread power_off_thread_;
};

}  // namespace cask::agent
