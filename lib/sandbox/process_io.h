// ProcessIoPump: copies the stdio of one agent process, named by
// (container_id, exec_id), to and from host file descriptors.
//
//   host stdin fd  --read-->  WriteStdin ... CloseStdin at EOF
//   ReadStdout     -------->  host stdout fd (closed at the stream's EOF)
//   ReadStderr     -------->  host stderr fd (closed at the stream's EOF)
//
// Each direction runs on its own thread. Host fds can be anything readable or
// writable: a terminal, pipes, containerd's FIFOs (blocking or O_NONBLOCK).
// The pump owns the fds it is given and closes each one when its direction
// ends, so a reader of an output FIFO sees EOF exactly when the process's
// stream has been fully delivered. A direction whose fd is invalid is not
// pumped at all (e.g. no stderr with a terminal, where the agent merges it
// into stdout; no stdin when the process was created without one).
//
// A failed write to a host output (EPIPE: nobody reads any more) does not
// stop the draining: the rest of the stream is read and discarded so the
// guest process never blocks on a full pipe.
//
// Calls that move nothing are retried with a back-off (1 ms doubling to
// 100 ms, reset by progress): WriteStdin returning 0 (the guest's stdin pipe
// is full; it is the only stdin buffer besides the one chunk held here) and
// an empty non-EOF read (only a misbehaving agent sends one). A pump never
// spins on the agent.
//
// Lifetime: the pump holds a reference to the AgentClient, which must
// outlive it. The destructor stops the stdin direction (even when it is
// blocked reading the host fd) and joins every thread; output threads end at
// their stream's EOF (the process and every holder of its stdout/stderr have
// exited) or when the agent connection closes, so destroy a pump only after
// one of those, e.g. after WaitDrained() or after AgentClient::Close().
//
// Thread safety: WaitDrained/WaitDrainedFor/status may be called from any
// thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/sandbox/agent_client.h"

namespace cask::sandbox {

struct ProcessIoFds {
  UniqueFd stdin_fd;   // read from the host; invalid: nothing sent
  UniqueFd stdout_fd;  // written on the host; invalid: ReadStdout not pumped
  UniqueFd stderr_fd;  // written on the host; invalid: ReadStderr not pumped
};

class ProcessIoPump {
 public:
  struct Options {
    // max_len of each ReadStdout/ReadStderr call (the agent caps at 1 MiB).
    uint32_t read_chunk = 64 * 1024;
    // Bytes read from the host stdin per WriteStdin call.
    size_t write_chunk = 64 * 1024;
  };

  // Starts the threads. Fails only if the cancellation eventfd cannot be
  // created.
  static Result<std::unique_ptr<ProcessIoPump>> Start(AgentClient& agent, std::string container_id,
                                                      std::string exec_id, ProcessIoFds fds);
  static Result<std::unique_ptr<ProcessIoPump>> Start(AgentClient& agent, std::string container_id,
                                                      std::string exec_id, ProcessIoFds fds, Options opts);
  ~ProcessIoPump();
  ProcessIoPump(const ProcessIoPump&) = delete;
  ProcessIoPump& operator=(const ProcessIoPump&) = delete;

  // Blocks until stdout and stderr have reached EOF (or failed) and their
  // host fds are closed: everything the process wrote has been delivered.
  void WaitDrained();
  // Same with a bound; false if still draining after `timeout`.
  bool WaitDrainedFor(std::chrono::milliseconds timeout);

  // Stops copying stdin now (does not send CloseStdin). Idempotent.
  void StopStdin();

  // The first error of an output direction (a failed Read RPC, i.e. output
  // may be incomplete), or OK. Host write errors are not reported: they are
  // the reader's choice.
  Status status() const;

 private:
  ProcessIoPump(AgentClient& agent, std::string container_id, std::string exec_id, Options opts);
  void CopyStdin(UniqueFd in);
  void CopyOutput(bool is_stderr, UniqueFd out);
  void OutputDone(std::optional<Error> err);

  AgentClient& agent_;
  const std::string container_id_;
  const std::string exec_id_;
  const Options opts_;
  UniqueFd cancel_fd_;  // eventfd: readable once StopStdin() was called

  mutable std::mutex mu_;
  std::condition_variable cv_;
  int outputs_running_ = 0;
  std::optional<Error> first_error_;

  std::thread stdin_thread_, stdout_thread_, stderr_thread_;
};

}  // namespace cask::sandbox
