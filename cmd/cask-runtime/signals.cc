#include "cmd/cask-runtime/signals.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

namespace cask::runtime {

const std::vector<int>& ForwardedSignals() {
  static const std::vector<int> kSignals = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  return kSignals;
}

Result<std::unique_ptr<SignalForwarder>> SignalForwarder::Start(std::function<void(int)> handler) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : ForwardedSignals()) sigaddset(&set, s);
  int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (err != 0) return Error::Sys(err, "block signals");
  std::unique_ptr<SignalForwarder> f(new SignalForwarder());
  f->handler_ = std::move(handler);
  int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) return Error::Sys(errno, "signalfd");
  f->signal_fd_.Reset(sfd);
  int efd = ::eventfd(0, EFD_CLOEXEC);
  if (efd < 0) return Error::Sys(errno, "eventfd");
  f->stop_fd_.Reset(efd);
  f->thread_ = std::thread(&SignalForwarder::Loop, f.get());
  return f;
}

SignalForwarder::~SignalForwarder() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_fd_.get(), &one, sizeof one);
    thread_.join();
  }
}

void SignalForwarder::Loop() {
  for (;;) {
    struct pollfd p[2] = {{signal_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    struct signalfd_siginfo si;
    ssize_t n = ::read(signal_fd_.get(), &si, sizeof si);
    if (n != static_cast<ssize_t>(sizeof si)) continue;
    handler_(static_cast<int>(si.ssi_signo));
  }
}

}  // namespace cask::runtime
