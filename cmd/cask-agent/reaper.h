// The guest's one reaper. The agent is PID 1: every orphan in the VM becomes
// its child, and it must wait for all of them. The Reaper owns a thread that
// reads SIGCHLD from a signalfd and collects every exited child with
// waitpid(-1, WNOHANG); nothing else in the agent may wait for a child.
//
// Exit statuses go to the callback registered for the pid (Watch). A child
// may exit before it is watched (e.g. killed while still pending): its status
// is kept in a bounded table of unclaimed exits and delivered when Watch is
// called. To tell such an early exit from the stale exit of an older process
// that had the same pid, Watch takes a Mark() taken before the process was
// forked: only exits reaped after the mark are matched. Unclaimed exits that
// nobody watches (orphans) are dropped, oldest first, beyond the bound.
//
// Precondition: SIGCHLD is blocked in every thread of the process (see
// SetupProcessSignals) before Start().
//
// Thread safety: all methods are thread-safe. Callbacks run on the reaper
// thread (or on the thread calling Watch, for an exit already collected),
// never with a Reaper lock held; they must not block for long.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::agent {

struct ExitEvent {
  pid_t pid = -1;
  int status = 0;            // exit code or 128+signal (ExitStatusFromWait)
  uint64_t exited_at_ns = 0;  // CLOCK_REALTIME
};

class Reaper {
 public:
  using Callback = std::function<void(const ExitEvent&)>;

  struct Options {
    // Unclaimed exits kept for late Watch calls.
    size_t max_unclaimed = 1024;
  };

  Reaper();
  explicit Reaper(Options opts);
  ~Reaper();  // Stop()
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // Creates the signalfd and starts the reaper thread.
  Status Start();
  // Stops the thread (children exiting afterwards are not reaped). Idempotent.
  void Stop();

  // A sequence number of reaped exits; take it before forking a process
  // that will be watched.
  uint64_t Mark() const;

  // Calls `cb` once when `pid` exits (immediately if it already exited after
  // `mark`). One watcher per pid; a second Watch replaces the first.
  void Watch(pid_t pid, uint64_t mark, Callback cb);
  // Forgets the watcher of `pid` (its exit is then dropped as an orphan's).
  void Unwatch(pid_t pid);

  // Collects every exited child now (what the thread does on SIGCHLD).
  // Exposed for tests and for shutdown paths.
  void ReapAll();

  size_t unclaimed_count() const;

 private:
  void Run();
  void Dispatch(const ExitEvent& ev);

  Options opts_;
  UniqueFd signal_fd_;
  UniqueFd stop_fd_;  // eventfd
  std::thread thread_;

  mutable std::mutex mu_;
  uint64_t seq_ = 0;
  std::map<pid_t, Callback> watchers_;
  struct Unclaimed {
    ExitEvent ev;
    uint64_t seq;
  };
  std::map<pid_t, Unclaimed> unclaimed_;
  std::deque<std::pair<pid_t, uint64_t>> unclaimed_order_;  // (pid, seq), oldest first
};

// Nanoseconds since the Unix epoch (CLOCK_REALTIME).
uint64_t NowUnixNanos();

}  // namespace cask::agent
