#include "lib/base/watchdog.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace cask {

Result<ForkedWatchdog> ForkWatchdog(const WatchdogOptions& opts, const std::function<Status(int byte)>& action) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe for the " + opts.name);
  UniqueFd r(p[0]), w(p[1]);
  pid_t pid = ::fork();
  if (pid < 0) return Error::Sys(errno, "fork the " + opts.name);
  if (pid == 0) {
    w.Reset();
    if (!opts.comm.empty()) ::prctl(PR_SET_NAME, opts.comm.c_str(), 0, 0, 0);
    ::setsid();
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, STDIN_FILENO);
      ::dup2(null, STDOUT_FILENO);
      ::close(null);
    }
    if (opts.close_other_fds)
      for (int fd = 3; fd < 1024; ++fd)
        if (fd != r.get() && std::find(opts.keep_fds.begin(), opts.keep_fds.end(), fd) == opts.keep_fds.end())
          ::close(fd);
    unsigned char c = 0;
    ssize_t n;
    do {
      n = ::read(r.get(), &c, 1);
    } while (n < 0 && errno == EINTR);
    Status st = action(n == 1 ? c : -1);
    if (!st.ok()) {
      std::string msg = opts.name + ": " + st.error().ToString() + "\n";
      [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
      ::_exit(1);
    }
    ::_exit(0);
  }
  ForkedWatchdog wd;
  wd.pid = pid;
  wd.pipe = std::move(w);
  return wd;
}

}  // namespace cask
