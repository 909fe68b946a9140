#include "lib/base/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace cask {

int ExitStatusFromWait(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 255;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

ChildProcess::ChildProcess(ChildProcess&& o) noexcept : pid_(o.Release()) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    ChildProcess old(pid_);
    pid_ = o.Release();
  }
  return *this;
}

pid_t ChildProcess::Release() {
  pid_t p = pid_;
  pid_ = -1;
  return p;
}

Status ChildProcess::Signal(int sig) const {
  if (pid_ <= 0) return Error::FailedPrecondition("no child process");
  if (::kill(pid_, sig) != 0) return Error::Sys(errno, "kill " + std::to_string(pid_));
  return Ok();
}

Result<std::optional<int>> ChildProcess::TryWait() {
  if (pid_ <= 0) return Error::FailedPrecondition("no child process");
  int st;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Error::Sys(errno, "waitpid " + std::to_string(pid_));
  if (r == 0) return std::optional<int>();
  pid_ = -1;
  return std::optional<int>(ExitStatusFromWait(st));
}

Result<int> ChildProcess::Wait() {
  if (pid_ <= 0) return Error::FailedPrecondition("no child process");
  int st;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Error::Sys(errno, "waitpid " + std::to_string(pid_));
  pid_ = -1;
  return ExitStatusFromWait(st);
}

Result<std::optional<int>> ChildProcess::WaitFor(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = TryWait();
    if (!r.ok() || r->has_value()) return r;
    if (std::chrono::steady_clock::now() >= deadline) return std::optional<int>();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<int> ChildProcess::Terminate(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return Error::FailedPrecondition("no child process");
  ::kill(pid_, SIGTERM);
  auto r = WaitFor(grace);
  if (!r.ok()) return std::move(r).error();
  if (r->has_value()) return **r;
  ::kill(pid_, SIGKILL);
  return Wait();
}

Result<ChildProcess> Spawn(const std::vector<std::string>& argv, const SpawnOptions& opts) {
  if (argv.empty()) return Error::InvalidArgument("spawn: empty argv");
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<char*> cenv;
  for (const auto& e : opts.env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe2");
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    return Error::Sys(err, "fork");
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    auto fail = [&](int err) {
      ssize_t ignored = ::write(errpipe[1], &err, sizeof err);
      (void)ignored;
      ::_exit(127);
    };
    for (int cg : opts.cgroup_procs_fds) {
      if (::write(cg, "0", 1) != 1) fail(errno);
    }
    if (opts.new_session && ::setsid() < 0) fail(errno);
    if (opts.new_process_group && ::setpgid(0, 0) < 0) fail(errno);
    if (opts.parent_death_signal != 0) {
      ::prctl(PR_SET_PDEATHSIG, opts.parent_death_signal);
      if (::getppid() != parent) ::_exit(127);
    }
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    int devnull = ::open("/dev/null", O_RDWR);
    int in = opts.stdin_fd >= 0 ? opts.stdin_fd : devnull;
    int out = opts.stdout_fd >= 0 ? opts.stdout_fd : devnull;
    int err = opts.stderr_fd >= 0 ? opts.stderr_fd : devnull;
    // dup to high numbers first so that the 0/1/2 and extra targets do not clobber sources.
    int base = 1000;
    int tin = ::fcntl(in, F_DUPFD, base), tout = ::fcntl(out, F_DUPFD, base), terr = ::fcntl(err, F_DUPFD, base);
    if (tin < 0 || tout < 0 || terr < 0) fail(errno);
    int tmp_extra[64];
    int n = 0;
    for (const auto& [target, src] : opts.extra_fds) {
      if (n >= 64) fail(EMFILE);
      tmp_extra[n] = ::fcntl(src, F_DUPFD, base);
      if (tmp_extra[n] < 0) fail(errno);
      ++n;
    }
    if (::dup2(tin, 0) < 0 || ::dup2(tout, 1) < 0 || ::dup2(terr, 2) < 0) fail(errno);
    n = 0;
    for (const auto& [target, src] : opts.extra_fds) {
      (void)src;
      if (::dup2(tmp_extra[n], target) < 0) fail(errno);
      ++n;
    }
    // Close everything except 0..2, the extra targets and the error pipe.
    for (int fd = 3; fd < 4096; ++fd) {
      if (fd == errpipe[1] || opts.extra_fds.count(fd)) continue;
      ::close(fd);
    }
    if (!opts.cwd.empty() && ::chdir(opts.cwd.c_str()) != 0) fail(errno);
    if (opts.env.empty()) {
      ::execv(cargv[0], cargv.data());
    } else {
      ::execve(cargv[0], cargv.data(), cenv.data());
    }
    fail(errno);
  }
  ::close(errpipe[1]);
  ChildProcess child(pid);
  int child_err = 0;
  ssize_t n;
  do {
    n = ::read(errpipe[0], &child_err, sizeof child_err);
  } while (n < 0 && errno == EINTR);
  ::close(errpipe[0]);
  if (n == sizeof child_err) {
    (void)child.Wait();
    return Error::Sys(child_err == ENOENT ? Code::kNotFound
                      : child_err == EACCES ? Code::kPermissionDenied
                                            : Code::kInternal,
                      child_err, "exec " + argv[0]);
  }
  return child;
}

}  // namespace cask
