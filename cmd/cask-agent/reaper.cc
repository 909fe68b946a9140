#include "cmd/cask-agent/reaper.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>

#include <cerrno>
#include <optional>

#include "lib/base/process.h"

namespace cask::agent {

uint64_t NowUnixNanos() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Reaper::Reaper() : Reaper(Options{}) {}
Reaper::Reaper(Options opts) : opts_(opts) {}
Reaper::~Reaper() { Stop(); }

Status Reaper::Start() {
  if (thread_.joinable()) return Error::FailedPrecondition("reaper already started");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, nullptr, &cur);
  if (!sigismember(&cur, SIGCHLD)) return Error::FailedPrecondition("reaper: SIGCHLD is not blocked");
  int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return Error::Sys(errno, "signalfd(SIGCHLD)");
  signal_fd_.Reset(sfd);
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd");
  stop_fd_.Reset(efd);
  thread_ = std::thread([this] { Run(); });
  return Ok();
}

void Reaper::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_fd_.get(), &one, sizeof one);
  thread_.join();
}

uint64_t Reaper::Mark() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seq_;
}

void Reaper::Run() {
  // Children that exited before the signalfd existed raise no new SIGCHLD.
  ReapAll();
  for (;;) {
    struct pollfd fds[2] = {{signal_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (fds[0].revents) {
      struct signalfd_siginfo si;
      while (::read(signal_fd_.get(), &si, sizeof si) == sizeof si) {
      }
      ReapAll();
    }
  }
}

void Reaper::ReapAll() {
  for (;;) {
    int wstatus = 0;
    pid_t pid = ::waitpid(-1, &wstatus, WNOHANG | __WALL);
    if (pid <= 0) {
      if (pid < 0 && errno == EINTR) continue;
      return;  // 0: children left but none exited; ECHILD: no children
    }
    if (!WIFEXITED(wstatus) && !WIFSIGNALED(wstatus)) continue;  // stopped/continued
    Dispatch(ExitEvent{pid, ExitStatusFromWait(wstatus), NowUnixNanos()});
  }
}

void Reaper::Dispatch(const ExitEvent& ev) {
  Callback cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t seq = ++seq_;
    auto it = watchers_.find(ev.pid);
    if (it != watchers_.end()) {
      cb = std::move(it->second);
      watchers_.erase(it);
    } else {
      unclaimed_[ev.pid] = Unclaimed{ev, seq};
      unclaimed_order_.emplace_back(ev.pid, seq);
      while (unclaimed_order_.size() > opts_.max_unclaimed) {
        auto [old_pid, old_seq] = unclaimed_order_.front();
        unclaimed_order_.pop_front();
        auto u = unclaimed_.find(old_pid);
        if (u != unclaimed_.end() && u->second.seq == old_seq) unclaimed_.erase(u);
      }
    }
  }
  if (cb) cb(ev);
}

void Reaper::Watch(pid_t pid, uint64_t mark, Callback cb) {
  std::optional<ExitEvent> early;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto u = unclaimed_.find(pid);
    if (u != unclaimed_.end()) {
      if (u->second.seq > mark) early = u->second.ev;
      // Either ours (delivered now) or stale (a previous owner of the pid).
      unclaimed_.erase(u);
    }
    if (!early) watchers_[pid] = std::move(cb);
  }
  if (early) cb(*early);
}

void Reaper::Unwatch(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  watchers_.erase(pid);
}

size_t Reaper::unclaimed_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unclaimed_.size();
}

}  // namespace cask::agent
