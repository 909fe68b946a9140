// Pidfd: the one owner of a process file descriptor (pidfd_open(2)).
//
// A pidfd names one process for its whole life: signals sent through it
// never reach a later process that reuses the pid, and it polls readable
// once the process has exited (reaped or not). Raw syscalls, because
// glibc 2.36's <sys/pidfd.h> lacks C linkage for C++. Needs Linux 5.3
// (pidfd_open) and 5.1 (pidfd_send_signal); both are in every kernel cask
// supports. Move-only; the fd is close-on-exec.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::sys {

class Pidfd {
 public:
  Pidfd() = default;

  // pidfd_open(pid). ESRCH when no such process exists; the caller must
  // make sure `pid` cannot have been reaped and reused yet (e.g. it is an
  // unreaped child of this process).
  static Result<Pidfd> Open(pid_t pid);

  // Owns `fd`, a pidfd received from another process (SCM_RIGHTS). The
  // pid it names is read from /proc/self/fdinfo; INVALID_ARGUMENT when
  // `fd` is not a pidfd, FAILED_PRECONDITION when its process has been
  // reaped (the pid is then unknown).
  static Result<Pidfd> FromFd(UniqueFd fd);

  bool valid() const { return fd_.valid(); }
  explicit operator bool() const { return valid(); }
  int get() const { return fd_.get(); }
  pid_t pid() const { return pid_; }

  // pidfd_send_signal. An exited process gives an error with errno ESRCH
  // (also for sig 0). FAILED_PRECONDITION when there is no pidfd.
  Status Signal(int sig) const;
  // True while the process has not exited (an exited, unreaped zombie is
  // not alive; signal 0 would still reach it).
  bool Alive() const;
  // Waits up to `timeout` for the process to exit (poll on the pidfd):
  // true once it has, false on timeout. 0 only checks.
  Result<bool> WaitExited(std::chrono::milliseconds timeout) const;
  // process_madvise(2): gives the kernel `advice` (MADV_COLD, MADV_PAGEOUT)
  // about the ranges `iov` of the process's address space; returns the
  // bytes advised. Needs Linux 5.10, PTRACE_MODE_READ over the process and
  // CAP_SYS_NICE (EPERM otherwise); ESRCH once it has exited; a range
  // that is not mapped fails with ENOMEM. FAILED_PRECONDITION without a
  // pidfd.
  Result<size_t> Madvise(const struct iovec* iov, size_t count, int advice) const;

  void Reset();

 private:
  Pidfd(UniqueFd fd, pid_t pid) : fd_(std::move(fd)), pid_(pid) {}
  UniqueFd fd_;
  pid_t pid_ = -1;
};

}  // namespace cask::sys
