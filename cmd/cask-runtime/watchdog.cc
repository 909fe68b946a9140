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
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe for the cleanup watchdog");
  UniqueFd r(p[0]), w(p[1]);
  pid_t pid = ::fork();
  if (pid < 0) return Error::Sys(errno, "fork the cleanup watchdog");
  if (pid == 0) {
    w.Reset();
    ::setsid();
    // Nobody waits on our stdin/stdout; stderr stays for a failure message.
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, STDIN_FILENO);
      ::dup2(null, STDOUT_FILENO);
      ::close(null);
    }
    char c = 0;
    ssize_t n;
    do {
      n = ::read(r.get(), &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1 && c == kDisarm) ::_exit(0);
    auto st = CleanupSandboxDir(sandbox_dir);
    if (!st.ok()) {
      std::string msg = "cask-runtime watchdog: cleanup of " + sandbox_dir + ": " + st.error().ToString() + "\n";
      [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
      ::_exit(1);
    }
    ::_exit(0);
  }
  CleanupWatchdog wd;
  wd.pipe_ = std::move(w);
  wd.pid_ = pid;
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
