// PID 1 duties of the guest agent: the early file systems, the cgroup v2
// hierarchy for containers, the process-wide signal setup, power-off.
//
// These run once, from main(), before any thread exists.
#pragma once

#include <string>
#include <vector>

#include "lib/base/result.h"

namespace cask::agent {

struct EarlyMount {
  std::string source;
  std::string target;
  std::string fstype;
  unsigned long flags = 0;
  std::string data;
  mode_t mode = 0755;  // of the target directory when it is created
};

// /proc, /sys, /dev (devtmpfs: the guest kernel does not automount it),
// /dev/pts, /dev/shm, /run, /sys/fs/cgroup (cgroup2), in mount order.
std::vector<EarlyMount> EarlyMounts();

// Mounts `m` (creating the target). A target that is already a mount point
// of the same file-system type is left alone (the agent may be restarted by
// hand while debugging).
Status MountEarly(const EarlyMount& m);

// Mounts every EarlyMounts() entry, then adds the /dev symlinks that udev
// would (fd, stdin, stdout, stderr). Stops at the first failure.
Status MountEarlyFilesystems();

// Reopens fds 0, 1, 2 on `console` (or /dev/null when it cannot be opened),
// so that no later fd lands on a standard number. Returns the fd to log to
// (a separate O_CLOEXEC fd on the console), or -1.
int SetupConsole(const std::string& console);

// The cgroup controllers the agent enables for containers.
std::vector<std::string> WantedControllers();

// Enables in `dir`/cgroup.subtree_control each of `wanted` that
// `dir`/cgroup.controllers offers. Returns what it enabled.
Result<std::vector<std::string>> EnableControllers(const std::string& dir, const std::vector<std::string>& wanted);

// Enables the controllers in the root cgroup, creates `cask_dir` (the
// parent of container cgroups) and enables them there too. The agent
// itself stays in the root cgroup.
Status SetupCgroups(const std::string& cgroup_mount, const std::string& cask_dir);

// Blocks SIGCHLD (the reaper reads it from a signalfd) and catches SIGPIPE
// with an empty handler (writes to a closed pipe or host channel are EPIPE
// errors, not deaths; unlike SIG_IGN the handler does not survive execve).
// Child processes inherit the blocked mask: whoever execs a container
// process must unblock SIGCHLD (lib/container resets the mask). Must run
// before the first thread is created so every thread inherits the mask.
Status SetupProcessSignals();

// Flushes file systems and powers the VM off. Returns only on failure.
Status PowerOff();

}  // namespace cask::agent
