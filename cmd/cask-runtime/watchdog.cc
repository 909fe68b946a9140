#include "cmd/cask-runtime/watchdog.h"

#include <dirent.h>
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
#include "lib/sandbox/shared_dir.h"

namespace cask::runtime {

namespace {

constexpr char kDisarm = 'd';

std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0' || pid == ::getpid()) continue;
    auto cmd = ReadFile(std::string("/proc/") + e->d_name + "/cmdline");
    if (!cmd.ok()) continue;
    for (char& c : *cmd)
      if (c == '\0') c = ' ';
    if (cmd->find(needle) != std::string::npos) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

}  // namespace

Status CleanupSandboxDir(const std::string& sandbox_dir) {
  const std::string needle = sandbox_dir + "/";
  for (int round = 0; round < 50; ++round) {
    auto pids = ProcessesMentioning(needle);
    if (pids.empty()) break;
    for (pid_t p : pids) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
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
