#include "lib/sys/pidfd.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

namespace cask::sys {

Result<Pidfd> Pidfd::Open(pid_t pid) {
  if (pid <= 0) return Error::InvalidArgument("pidfd_open: bad pid " + std::to_string(pid));
  // pidfd_open always sets close-on-exec on the new fd.
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return Error::Sys(errno, "pidfd_open " + std::to_string(pid));
  return Pidfd(UniqueFd(static_cast<int>(fd)), pid);
}

Result<Pidfd> Pidfd::FromFd(UniqueFd fd) {
  if (!fd) return Error::InvalidArgument("pidfd: no fd");
  std::string path = "/proc/self/fdinfo/" + std::to_string(fd.get());
  FILE* f = ::fopen(path.c_str(), "re");
  if (f == nullptr) return Error::Sys(errno, "read " + path);
  char line[256];
  long pid = 0;
  bool found = false;
  while (::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "Pid: %ld", &pid) == 1) {
      found = true;
      break;
    }
  }
  ::fclose(f);
  if (!found) return Error::InvalidArgument("fd " + std::to_string(fd.get()) + " is not a pidfd");
  if (pid <= 0) return Error::FailedPrecondition("the pidfd's process has been reaped");
  return Pidfd(std::move(fd), static_cast<pid_t>(pid));
}

Status Pidfd::Signal(int sig) const {
  if (!fd_) return Error::FailedPrecondition("signal " + std::to_string(sig) + ": no pidfd");
  if (::syscall(SYS_pidfd_send_signal, fd_.get(), sig, nullptr, 0) != 0)
    return Error::Sys(errno, "signal " + std::to_string(sig) + " to pid " + std::to_string(pid_));
  return Ok();
}

Result<size_t> Pidfd::Madvise(const struct iovec* iov, size_t count, int advice) const {
  if (!fd_) return Error::FailedPrecondition("process_madvise of pid " + std::to_string(pid_) + ": no pidfd");
  long n = ::syscall(SYS_process_madvise, fd_.get(), iov, count, advice, 0u);
  if (n < 0) return Error::Sys(errno, "process_madvise(" + std::to_string(advice) + ") of pid " + std::to_string(pid_));
  return static_cast<size_t>(n);
}

bool Pidfd::Alive() const {
  if (!fd_) return false;
  pollfd p{fd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

Result<bool> Pidfd::WaitExited(std::chrono::milliseconds timeout) const {
  if (!fd_) return Error::FailedPrecondition("wait for pid " + std::to_string(pid_) + ": no pidfd");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return Error::Sys(errno, "poll pidfd of " + std::to_string(pid_));
  }
}

void Pidfd::Reset() {
  fd_.Reset();
  pid_ = -1;
}

}  // namespace cask::sys
