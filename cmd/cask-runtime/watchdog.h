// The cleanup watchdog of `cask-runtime run`: a child process that removes
// a sandbox's host state if cask-runtime dies without doing so itself
// (SIGKILL, a crash). It waits on a pipe from its parent: a "disarm" byte
// means the parent cleaned up; EOF without it means the parent is gone, and
// the watchdog kills the VM's host processes by identity (the pod's cgroup,
// QEMU's and virtiofsd's pid + start time recorded in the sandbox directory:
// hypervisor/vm_leftovers.h), unmounts everything under the directory and
// removes it. Nothing is matched by command line, so an operator's
// `tail -f` of the console log survives.
// It runs in its own session with the parent's blocked signals, so a ^C or
// a signal to the terminal's process group does not stop it.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::runtime {

class CleanupWatchdog {
 public:
  CleanupWatchdog() = default;
  // Forks the watchdog for `sandbox_dir` (<state_dir>/<id>). Call it while
  // the process has a single thread.
  static Result<CleanupWatchdog> Start(const std::string& sandbox_dir);
  ~CleanupWatchdog() { Disarm(); }
  CleanupWatchdog(CleanupWatchdog&& o) noexcept : pipe_(std::move(o.pipe_)), pid_(o.pid_) { o.pid_ = -1; }
  CleanupWatchdog& operator=(CleanupWatchdog&& o) noexcept {
    if (this != &o) {
      Disarm();
      pipe_ = std::move(o.pipe_);
      pid_ = o.pid_;
      o.pid_ = -1;
    }
    return *this;
  }
  CleanupWatchdog(const CleanupWatchdog&) = delete;
  CleanupWatchdog& operator=(const CleanupWatchdog&) = delete;

  // Tells the watchdog that everything is clean and reaps it.
  void Disarm();
  // Has the watchdog clean up now (after a failed teardown) and reaps it.
  void CleanUpNow();

 private:
  void Finish(bool disarm);
  UniqueFd pipe_;  // write end
  pid_t pid_ = -1;
};

// What the watchdog does: hypervisor::KillVmLeftovers(sandbox_dir) (waits
// for them to go), then unmount everything under sandbox_dir and remove it.
Status CleanupSandboxDir(const std::string& sandbox_dir);

}  // namespace cask::runtime
