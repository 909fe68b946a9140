#include "cmd/cask-runtime/watchdog.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <thread>
#include <vector>

#include "lib/base/fs.h"
#include "lib/base/watchdog.h"
#include "lib/hypervisor/vm_leftovers.h"
#include "lib/sandbox/shared_dir.h"

namespace cask::runtime {

namespace {

constexpr char kDisarm = 'd';

constexpr std::chrono::milliseconds kKillTimeout{5000};

}  // namespace

Status CleanupSandboxDir(const std::string& sandbox_dir) {
  // By identity only: the pod's cgroup and the recorded pids + start times.
  CASK_TRY(hypervisor::KillVmLeftovers(sandbox_dir, kKillTimeout));
  if (!PathExists(sandbox_dir)) return Ok();
  char buf[PATH_MAX];
  std::string real = ::realpath(sandbox_dir.c_str(), buf) ? std::string(buf) : sandbox_dir;
  CASK_TRY(sandbox::UnmountAllUnder(real));
  return sandbox::RemoveTreeNoMounts(real);
}

Result<CleanupWatchdog> CleanupWatchdog::Start(const std::string& sandbox_dir) {
  WatchdogOptions o;
  o.name = "cask-runtime watchdog";
  CASK_ASSIGN_OR_RETURN(ForkedWatchdog fw, ForkWatchdog(o, [&](int byte) -> Status {
                          if (byte == kDisarm) return Ok();
                          return CleanupSandboxDir(sandbox_dir).Context("cleanup of " + sandbox_dir);
                        }));
  CleanupWatchdog wd;
  wd.pipe_ = std::move(fw.pipe);
  wd.pid_ = fw.pid;
  return wd;
}

void CleanupWatchdog::Disarm() { Finish(true); }

void CleanupWatchdog::CleanUpNow() { Finish(false); }

void CleanupWatchdog::Finish(bool disarm) {
  if (pid_ <= 0) return;
  if (disarm) {
    char c = kDisarm;
    [[maybe_unused]] ssize_t n = ::write(pipe_.get(), &c, 1);
  }
  pipe_.Reset();
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

}  // namespace cask::runtime
