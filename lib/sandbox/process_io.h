// The host side of container stdio: one I/O loop per sandbox that moves the
// bytes of every process between host file descriptors (containerd's FIFOs,
// a terminal, pipes, files) and the agent's event stream.
//
//   host stdin fd  --read-->  WriteStdin ... CloseStdin at EOF
//   agent output (GetEvents, per-stream credit)  -->  host stdout/stderr fd
//
// Threads. A ProcessIoLoop has three threads whatever the number of
// processes: the loop (epoll over the host fds, an eventfd that the
// AgentClient's output listener writes, and a timerfd for drain deadlines),
// a stdin sender that makes the WriteStdin and CloseStdin calls, so no
// agent round trip ever runs on the loop, and an exit thread that runs the
// exit functions of WatchExit one after the other. Output credit is granted
// back by the AgentClient's own grant thread. A ProcessIoPump is one
// process's registration in the loop.
//
// Output and back-pressure. For each stream the loop takes what the
// AgentClient buffered (TryReadOutput, never blocking) and writes it to the
// host fd without blocking; what the fd does not take now (a full FIFO, a
// reader not there yet) is held, and nothing more is taken for that stream
// until the fd is writable again (EPOLLOUT). Taking is what grants the agent
// credit, so a stalled host reader stops the guest process after one credit
// window, and host memory per stream stays bounded by the AgentClient's
// window plus one held chunk (Options::max_chunk), whatever the guest sends.
// A failed write (EPIPE: the FIFO's reader went away; a write error) does
// not stop the stream: the rest is taken and discarded so the guest process
// never blocks on a reader that is gone. At the stream's EOF the host fd is
// closed, so a reader of an output FIFO sees EOF exactly when everything
// the process wrote has been delivered.
//
// Drained. A pump is drained once each of its output streams has reached
// EOF and been written (or failed: the agent connection closed, an
// unusable fd) and its host fd closed. This is the ordering contract for
// exits: an owner that reports a process's exit only after OnDrained fired
// (or WaitDrained returned) never loses output written just before the
// exit. A pump without output fds is drained from the start.
//
// Exits (WatchExit). The loop learns of a process's exit from the agent's
// event stream (the output listener names the process, then TryWaitProcess
// answers). An exit is handed on only after the pump drained, or once the
// drain deadline passed (drain_after_exit; drain_after_loss when the exit
// was lost: the connection closed, or the agent does not know the process),
// a timer of the loop, never a thread per process. The exit functions run
// on the exit thread, in the order the exits became ready, with no lock of
// the loop or the pump held; they may block (holding up only later exits
// of the same sandbox) but must not destroy their own pump. Against an
// agent without the event stream a thread per watched process blocks in
// WaitProcess (the legacy case).
//
// Stdin. Read from the host fd when readable, one chunk (max_chunk) at a
// time: the next read waits until the sender has written the chunk to the
// guest (WriteStdin returning 0 means the guest's stdin pipe is full; the
// sender retries with a back-off of 1 ms doubling to 100 ms, reset by
// progress, without holding up other processes' stdin). At the host fd's EOF
// the sender calls CloseStdin. StopStdin() ends the direction without
// closing the guest's stdin.
//
// Host fds. The pump owns the fds it is given and closes each one when its
// direction ends. FIFOs, pipes and terminals are reopened through
// /proc/self/fd with O_NONBLOCK (a private open file description, so a
// terminal shared with the user's shell is left blocking); fds that cannot
// be reopened (sockets) are set O_NONBLOCK in place; regular files, which
// epoll cannot watch and which never block, are used as they are.
//
// Lifetime: the loop holds a reference to the AgentClient, which must
// outlive it, and every pump must be destroyed before its loop. Destroying a
// pump unregisters it at once (waiting for the loop to leave it if it is
// being served), closes its host fds and drops output not yet written;
// destroy it after it is drained unless the output no longer matters.
// Destroying a pump also drops its exit if not handed on yet, and waits
// for its exit function if that runs now (except on the exit thread).
// Drained callbacks run on the loop thread (on the thread calling
// OnDrained when already drained; on a stream's copy thread against an
// agent without the event stream, the one case that costs a thread per
// stream) and must not block or destroy the pump.
//
// Thread safety: every method of both classes may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/thread_annotations.h"
#include "lib/base/unique_fd.h"
#include "lib/sandbox/agent_client.h"

namespace cask::sandbox {

struct ProcessIoFds {
  UniqueFd stdin_fd;   // read from the host; invalid: nothing sent
  UniqueFd stdout_fd;  // written on the host; invalid: stdout not copied
  UniqueFd stderr_fd;  // written on the host; invalid: stderr not copied
};

class ProcessIoPump;

class ProcessIoLoop {
 public:
  struct Options {
    // Most bytes taken from a stream, or read from a host stdin, at once;
    // also the most held per stream while its host fd is full.
    size_t max_chunk = 256 * 1024;
  };
  // What the loop did (tests, benchmarks).
  struct Stats {
    uint64_t output_bytes = 0;     // written to host fds
    uint64_t discarded_bytes = 0;  // taken after the host fd failed
    uint64_t output_full = 0;      // times a host output fd was full (EAGAIN)
    uint64_t stdin_bytes = 0;      // accepted by the guest
    uint64_t exits = 0;            // exit functions run (WatchExit)
    uint64_t drain_timeouts = 0;   // exits handed on undrained, at the deadline
    size_t pumps = 0;              // registered now
  };

  // Starts the loop and the stdin sender, and becomes `agent`'s output
  // listener. Fails if epoll or the eventfd cannot be created.
  static Result<std::unique_ptr<ProcessIoLoop>> Start(AgentClient& agent, Options opts);
  static Result<std::unique_ptr<ProcessIoLoop>> Start(AgentClient& agent) { return Start(agent, Options{}); }
  // Clears the output listener and joins both threads. No pump may be left.
  ~ProcessIoLoop();
  ProcessIoLoop(const ProcessIoLoop&) = delete;
  ProcessIoLoop& operator=(const ProcessIoLoop&) = delete;

  Stats stats() const;
  // Threads of the loop (constant).
  static constexpr int kThreads = 3;

  struct Impl;

 private:
  friend class ProcessIoPump;
  explicit ProcessIoLoop(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

class ProcessIoPump {
 public:
  // Registers the stdio of process (container_id, exec_id) with `loop`.
  // Fails if a host fd cannot be prepared or watched.
  static Result<std::unique_ptr<ProcessIoPump>> Start(ProcessIoLoop& loop, std::string container_id,
                                                      std::string exec_id, ProcessIoFds fds);
  ~ProcessIoPump();
  ProcessIoPump(const ProcessIoPump&) = delete;
  ProcessIoPump& operator=(const ProcessIoPump&) = delete;

  // Blocks until drained (see the file comment).
  void WaitDrained();
  // Same with a bound; false if still draining after `timeout`.
  bool WaitDrainedFor(std::chrono::milliseconds timeout);
  // Runs `fn` once drained, with status(); at once on this thread if it
  // already is. For owners that must not block a thread per process.
  void OnDrained(std::function<void(const Status&)> fn);
  bool drained() const;

  struct ExitWatch {
    // How long an exit waits for the output: when the agent reported it,
    // and when it was lost (connection closed, process unknown).
    std::chrono::milliseconds drain_after_exit{10'000};
    std::chrono::milliseconds drain_after_loss{1'000};
  };
  struct ExitReport {
    Result<ProcessExit> exit;  // the agent's, or why it is lost (UNAVAILABLE, NOT_FOUND)
    bool drained = false;      // the output drained before it was handed on
    // The host's clock when the loop learned of the exit (or its loss),
    // before any drain wait.
    std::chrono::system_clock::time_point seen_at;
  };
  using ExitFn = std::function<void(ExitReport)>;
  // Watches the process's exit (see the file comment): `fn` runs once, on
  // the loop's exit thread. A second call is ignored.
  void WatchExit(ExitWatch w, ExitFn fn);

  // Stops copying stdin now (does not send CloseStdin). Idempotent.
  void StopStdin();

  // The first error of an output direction (the agent connection closed
  // before EOF: output may be incomplete), or OK. Host write errors are not
  // reported: they are the reader's choice.
  Status status() const;

  struct State;

 private:
  ProcessIoPump(std::shared_ptr<ProcessIoLoop::Impl> loop, std::shared_ptr<State> state)
      : loop_(std::move(loop)), state_(std::move(state)) {}
  std::shared_ptr<ProcessIoLoop::Impl> loop_;
  std::shared_ptr<State> state_;
};

}  // namespace cask::sandbox
