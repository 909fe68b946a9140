// ForkWatchdog: a child process that outlives its parent to clean up after
// it. Shared by cask-runtime's per-run cleanup watchdog and the warm pool's.
//
// The child runs in a session of its own (not killed with the parent's
// session or process group), with stdin and stdout on /dev/null and stderr
// kept for a failure message, and blocks reading a close-on-exec pipe. The
// parent holds the write end: when it writes a byte, or when it is gone and
// the pipe reads EOF, the child calls `action` with that byte (-1 for EOF)
// and exits 0 if it returned Ok, or 1 after writing
// "<name>: <error>\n" to stderr.
//
// `action` runs in the forked child of a possibly multi-threaded parent:
// it may allocate (as the callers' cleanups do) but must not need a lock
// another parent thread could have held at fork.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask {

struct WatchdogOptions {
  std::string name;  // for messages: "cask pool watchdog"
  std::string comm;  // the child's comm (prctl, at most 15 bytes); empty: the parent's
  // When set, the child closes every fd from 3 up except the pipe and these
  // (nothing else of the parent's stays open while it waits).
  bool close_other_fds = false;
  std::vector<int> keep_fds;
};

struct ForkedWatchdog {
  pid_t pid = -1;
  UniqueFd pipe;  // the write end, close-on-exec
};

Result<ForkedWatchdog> ForkWatchdog(const WatchdogOptions& opts, const std::function<Status(int byte)>& action);

}  // namespace cask
