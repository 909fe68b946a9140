// Child processes: spawning and the one owner of a child pid.
//
// A ChildProcess that is destroyed while it still owns a live child sends it
// SIGKILL and reaps it, so an error path can never leak a process. Call
// Release() to hand the pid elsewhere (e.g. to a reaper that waits on it).
//
// Thread safety: a ChildProcess is not internally synchronised.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask {

// How a process ended, in the containerd convention: the exit code, or
// 128 + signal number when it was killed by a signal.
int ExitStatusFromWait(int wstatus);

class ChildProcess {
 public:
  ChildProcess() = default;
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess();
  ChildProcess(ChildProcess&& o) noexcept;
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool valid() const { return pid_ > 0; }
  pid_t Release();

  Status Signal(int sig) const;
  // Non-blocking: the exit status if the child has exited (and reaps it).
  Result<std::optional<int>> TryWait();
  // Blocks until the child exits; returns ExitStatusFromWait.
  Result<int> Wait();
  // Waits up to `timeout`; nullopt if still running.
  Result<std::optional<int>> WaitFor(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL and reap. Returns the status.
  Result<int> Terminate(std::chrono::milliseconds grace);

 private:
  pid_t pid_ = -1;
};

struct SpawnOptions {
  // File descriptors for the child's stdin/stdout/stderr; -1 means /dev/null.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Extra fds to pass: child fd number -> parent fd. Everything else is
  // closed (O_CLOEXEC is assumed on all parent fds).
  std::map<int, int> extra_fds;
  // Environment; if empty the parent's environment is inherited.
  std::vector<std::string> env;
  std::string cwd;
  bool new_session = false;     // setsid()
  bool new_process_group = false;  // setpgid(0,0)
  // Signal sent to the child when the parent thread dies (PR_SET_PDEATHSIG);
  // 0 for none.
  int parent_death_signal = 0;
  // Open, writable cgroup membership files (a v2 "cgroup.procs", v1
  // "cgroup.procs" of each hierarchy). The child writes "0" to each before
  // anything else, so it runs in those cgroups from its first instruction
  // after fork and execs already charged there; a failed write fails the
  // spawn (the errno is the write's).
  std::vector<int> cgroup_procs_fds;
};

// fork + execve. argv[0] must be a path (no PATH lookup). The exec failure is
// reported through a close-on-exec pipe, so a missing binary is an error
// here, not a silent child exit.
Result<ChildProcess> Spawn(const std::vector<std::string>& argv, const SpawnOptions& opts);

}  // namespace cask
