// AgentClient: the host's typed view of the guest agent (cask.agent.v1.Agent,
// proto/agent.proto) over one ttrpc connection.
//
// This is the only host file, besides the shim's service adapter, that sees
// the generated protobuf types: callers work with the plain structs below and
// with lib/oci types. Errors come back with the agent's status code
// (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, ...) and
// the RPC name as context.
//
// The event stream. Exits, OOM kills and process output come from one long
// poll per client (GetEvents, proto/agent.proto), run by one thread of the
// client, started by the first CreateContainer/ExecProcess or by the first
// blocking call. WaitProcess, ReadStdout/ReadStderr and GetOOMEvent wait
// locally for what that stream delivered, so however many processes live,
// the agent has one blocked call per sandbox. Output is flow-controlled per
// stream (the agent sends within credit the client grants as readers take
// output), so at most Options::output_window bytes are buffered per stream
// here. Against an agent without GetEvents (UNIMPLEMENTED) the client falls
// back to the per-process legacy calls, with the same meaning.
//
// Non-blocking output (for one I/O loop per sandbox, process_io.h):
// SetOutputListener is told which processes' output changed after each
// batch, TryReadOutput takes what is buffered without waiting, and the
// credit it frees is granted back by the client's grant thread (one
// GrantOutput per round, for every stream at once), never on the caller's
// thread. A stream's credit is topped up only when its reader takes output,
// so a reader that stops taking (its host FIFO is full) stops the agent
// within one window: that is the back-pressure.
//
// Timeouts: every call carries a deadline: Options::call_timeout for calls
// the agent answers promptly (the guest runs under TCG and can be slow, so
// it is generous), event_wait + call_timeout for each GetEvents. The
// blocking methods (WaitProcess, ReadStdout, ReadStderr, GetOOMEvent) wait
// without a deadline for the event they need and end with UNAVAILABLE when
// the connection closes (the VM died, or Close()). WriteStdin does not block
// in the agent: it may return 0 (stdin full) and the caller retries later.
//
// The agent is hostile input: ids in events longer than kMaxGuestIdLength are
// dropped, status messages are cut (lib/rpc), output beyond the credit the
// client gave and events for processes this client did not create are
// dropped (exits of unknown processes are kept in a small bounded table);
// the OOM queue is bounded and coalesced. EventStats counts what was dropped.
//
// Thread safety: all methods are thread-safe and may be in flight
// concurrently (the connection multiplexes them).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/oci/spec.h"
#include "lib/net/network_setup.h"
#include "lib/sys/cgroup_stats.h"

namespace cask::rpc {
class Client;
}

namespace cask::sandbox {

// The ttrpc service name of the agent.
inline constexpr std::string_view kAgentService = "cask.agent.v1.Agent";

struct AgentInfo {
  std::string agent_version;
  std::string kernel_release;  // uname -r of the guest
  std::chrono::nanoseconds uptime{0};
  uint32_t agent_threads = 0;    // threads of the agent process (0: not reported)
  uint64_t agent_rss_bytes = 0;  // its resident memory
};

struct GuestMount {
  std::string source;
  std::string target;  // guest path
  std::string fstype;
  std::vector<std::string> options;
};

struct SandboxSetup {
  std::string sandbox_id;
  std::string hostname;
  std::string resolv_conf;  // empty leaves the guest's alone
  std::vector<GuestMount> mounts;
};

// The pod network as the guest gets it (ConfigureNetwork): one struct for
// both ends of the agent wire, lib/net/network_setup.h.
using NetInterfaceSetup = net::InterfaceSetup;
using NetRouteSetup = net::RouteSetup;
using NetNeighbourSetup = net::NeighbourSetup;
using NetworkSetup = net::NetworkSetup;

struct ProcessExit {
  int status = 0;  // exit code, or 128 + signal
  uint64_t exited_at_ns = 0;  // Unix epoch nanoseconds
};

// Longest container or exec id accepted from the agent (the agent's own rule
// is 128 characters).
inline constexpr size_t kMaxGuestIdLength = 256;
// Output credit a stream starts with (proto/agent.proto: kInitialOutputCredit).
inline constexpr size_t kInitialOutputCredit = 64 * 1024;

// (container id, exec id); exec id "" is a container's init process.
using ProcessKey = std::pair<std::string, std::string>;

struct StreamChunk {
  std::string data;
  bool eof = false;  // the stream is closed and fully drained
};

class AgentClient {
 public:
  struct Options {
    // Timeout of the calls that do not block by design.
    std::chrono::milliseconds call_timeout{60'000};
    // Timeout of one Check attempt in WaitReady.
    std::chrono::milliseconds check_attempt_timeout{1'000};
    // How long one GetEvents may wait in the agent for something to report.
    std::chrono::milliseconds event_wait{10'000};
    // Output buffered here for all streams together, beyond which output is
    // dropped (only a misbehaving agent gets there: per-stream credit keeps
    // an honest one far below for up to 512 streams).
    size_t max_buffered_output = 32 << 20;
    // Credit kept granted per output stream while its reader keeps up: the
    // bytes in flight between the guest and the reader. One window per
    // round trip is the throughput of a stream, so it is well above the
    // initial credit; it shrinks back to kInitialOutputCredit while the
    // credit of all streams together would pass max_buffered_output.
    size_t output_window = 1 << 20;
    // Output bytes the agent may put in one GetEvents reply. Smaller than
    // the window, so several replies are in flight per window, and small
    // enough that a reply fits in the host socket's buffer (~200 KiB; a
    // reply that does not fit makes QEMU throttle the virtio-serial port).
    // 1 MiB replies were tried: fewer round trips, but one small-write exec
    // in two stalled for ~60 s under load, before the agent reader's lost
    // wake-up was found and fixed (lib/rpc/fd_stream.h); replies stay at
    // 128 KiB until they are measured again.
    uint32_t batch_output = 128 * 1024;
    // Exits of processes this client does not know, kept for a late
    // WaitProcess; OOM ids waiting for GetOOMEvent.
    size_t max_unclaimed_exits = 256;
    size_t max_queued_oom = 1024;
  };

  // What the event stream received and dropped (tests, diagnostics).
  struct EventStats {
    uint64_t batches = 0;
    uint64_t exits = 0;
    uint64_t output_bytes = 0;
    uint64_t dropped_events = 0;        // unknown ids, oversized ids, queue full
    uint64_t dropped_output_bytes = 0;  // beyond credit or the buffer cap
    uint64_t grants = 0;                // GrantOutput calls
    uint64_t grant_retries = 0;         // grant rounds sent again after a timeout
    uint64_t max_batch_output = 0;      // most output bytes in one batch
    uint64_t poll_errors = 0;
  };

  // Takes the connected channel (a unix socket to QEMU's virtio-serial
  // chardev, a vsock, or one end of a socketpair in tests).
  explicit AgentClient(UniqueFd channel);
  AgentClient(UniqueFd channel, Options opts);
  ~AgentClient();  // Close()s and joins the connection's reader.
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  // Retries Check until the agent answers, the connection closes, `abort`
  // returns true (polled between attempts; e.g. "the VM has exited" or "the
  // user pressed ^C"), or `timeout` passes (DEADLINE_EXCEEDED). On a serial
  // channel requests written before the guest opened its port are delivered
  // late, so each attempt has its own short timeout.
  Result<AgentInfo> WaitReady(std::chrono::milliseconds timeout, const std::function<bool()>& abort = {});

  Result<AgentInfo> Check();
  Status SetupSandbox(const SandboxSetup& setup);
  // Configures the guest NICs; `timeout` bounds the call (the agent waits
  // for the NICs to appear).
  Status ConfigureNetwork(const NetworkSetup& net, std::chrono::milliseconds timeout);
  // The guest's listening TCP ports (not on loopback). The guest's answer
  // is checked: more than 64 ports or a port outside 1..65535 is an error.
  Result<std::set<uint16_t>> ListTcpListeners();
  // The agent replies before powering the guest off. `timeout` bounds the
  // wait (defaults to Options::call_timeout).
  Status DestroySandbox(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // `spec` is sent as JSON; its bind-mount sources must already be guest
  // paths (Sandbox::ShareMounts). Returns the guest pid of the init process.
  Result<uint32_t> CreateContainer(const std::string& container_id, const oci::Spec& spec,
                                   const std::string& rootfs_path, bool stdin);
  Result<uint32_t> StartContainer(const std::string& container_id);
  Status RemoveContainer(const std::string& container_id, bool force);

  Result<uint32_t> ExecProcess(const std::string& container_id, const std::string& exec_id,
                               const oci::Process& process, bool stdin);
  Status SignalProcess(const std::string& container_id, const std::string& exec_id, int signal,
                       bool all = false);
  // Blocks until the process's exit arrives; NOT_FOUND if this client did
  // not create it (and no exit of it is kept) or it was removed meanwhile.
  Result<ProcessExit> WaitProcess(const std::string& container_id, const std::string& exec_id);
  // Non-blocking WaitProcess: the exit if it arrived, nullopt while it may
  // still come (the output listener is called when it does, or when
  // anything may have changed); UNAVAILABLE, NOT_FOUND as WaitProcess;
  // UNIMPLEMENTED against an agent without the event stream (use
  // WaitProcess then).
  Result<std::optional<ProcessExit>> TryWaitProcess(const std::string& container_id, const std::string& exec_id);
  Result<std::vector<uint32_t>> ListProcesses(const std::string& container_id);
  // Forgets a stopped exec in the guest (see RemoveProcess in agent.proto).
  Status RemoveProcess(const std::string& container_id, const std::string& exec_id);

  // Returns how many bytes the agent accepted (may be fewer than data.size()).
  Result<size_t> WriteStdin(const std::string& container_id, const std::string& exec_id,
                            std::string_view data);
  Status CloseStdin(const std::string& container_id, const std::string& exec_id);
  // Blocks until output of the stream is buffered here, or its EOF, and
  // returns up to max_len bytes (0: 1 MiB); eof once the stream is closed
  // and drained. A removed process's streams read as EOF. A chunk is never
  // empty unless eof is set.
  Result<StreamChunk> ReadStdout(const std::string& container_id, const std::string& exec_id,
                                 uint32_t max_len);
  Result<StreamChunk> ReadStderr(const std::string& container_id, const std::string& exec_id,
                                 uint32_t max_len);
  // Non-blocking ReadStdout (stream 0) / ReadStderr (stream 1): up to
  // `max_len` buffered bytes, possibly none (nothing buffered now: the
  // output listener is called when that changes); eof as ReadStdout. The
  // credit freed is granted asynchronously. UNAVAILABLE once the connection
  // closed, UNIMPLEMENTED against an agent without the event stream (use the
  // blocking reads then).
  Result<StreamChunk> TryReadOutput(const std::string& container_id, const std::string& exec_id, int stream,
                                    size_t max_len);
  // Called on the client's event thread, with no client lock held, after
  // output, EOF or the exit of the listed processes arrived; an empty list means
  // "anything may have changed" (the connection closed, the event stream
  // started or fell back to the legacy calls, a process was forgotten).
  // Must not block. Replaces an earlier listener; an empty function clears
  // it (and returns once a running call of the old one finished).
  void SetOutputListener(std::function<void(const std::vector<ProcessKey>& changed)> listener);
  Status TtyWinResize(const std::string& container_id, const std::string& exec_id, uint32_t rows,
                      uint32_t cols);

  Result<sys::CgroupStats> StatsContainer(const std::string& container_id);
  Status PauseContainer(const std::string& container_id);
  // SetTime: the guest's wall clock to `now` (the host's).
  Status SetTime(std::chrono::system_clock::time_point now);
  Status ResumeContainer(const std::string& container_id);
  Status UpdateContainer(const std::string& container_id, const oci::LinuxResources& resources);
  // Blocks until some container's process is OOM-killed; returns its id.
  Result<std::string> GetOOMEvent();

  // Shuts the connection down: pending and later calls, and every local
  // waiter, fail with UNAVAILABLE.
  void Close();
  bool closed() const;

  EventStats event_stats() const;
  // True while the event stream is used; false before it started and after
  // falling back to the legacy calls.
  bool using_event_stream() const;

 private:
  struct Events;
  void EnsureEvents();
  void EventLoop();
  Result<StreamChunk> ReadOutput(const std::string& container_id, const std::string& exec_id, int stream,
                                 uint32_t max_len);
  void GrantLoop();
  void NotifyListener(const std::vector<ProcessKey>& changed);
  // Tracks a process so that its events are accepted. Returns whether it
  // was new.
  bool Track(const std::string& container_id, const std::string& exec_id);
  // Forgets a process's output; its entry stays (for WaitProcess) until its
  // exit arrives when `exit_may_come`.
  void Untrack(const std::string& container_id, const std::string& exec_id, bool exit_may_come);
  void UntrackContainer(const std::string& container_id);

  std::unique_ptr<rpc::Client> client_;
  Options opts_;
  std::unique_ptr<Events> events_;
};

}  // namespace cask::sandbox
