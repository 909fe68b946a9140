#include "cmd/cask-agent/serve.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "cmd/cask-agent/channel.h"

namespace cask::agent {

namespace {

// While a connection is served: notices the host hanging up (POLLHUP on the
// port) and keeps cancelling blocked calls until the connection is done, so
// handlers that were dispatched late are released too.
class HangupWatcher {
 public:
  HangupWatcher(int port_fd, Agent& agent) : port_fd_(port_fd), agent_(agent) {
    stop_.Reset(::eventfd(0, EFD_CLOEXEC));
    thread_ = std::thread([this] { Run(); });
  }
  ~HangupWatcher() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
    thread_.join();
  }

 private:
  void Run() {
    bool hung_up = false;
    for (;;) {
      struct pollfd fds[2] = {{port_fd_, 0, 0}, {stop_.get(), POLLIN, 0}};
      int r = ::poll(fds, 2, hung_up ? 100 : -1);
      if (r < 0 && errno != EINTR) return;
      if (fds[1].revents) return;
      if (fds[0].revents & (POLLHUP | POLLERR)) hung_up = true;
      if (hung_up) agent_.CancelBlockingCalls();
    }
  }

  int port_fd_;
  Agent& agent_;
  UniqueFd stop_;
  std::thread thread_;
};

}  // namespace

void ServeSerialForever(rpc::Server& server, Agent& agent, const Logger& log) {
  Logger clog = log.WithSubsystem("channel");
  for (;;) {
    auto start = std::chrono::steady_clock::now();
    auto port = OpenVirtioPort(kSerialPortName, std::chrono::seconds(10));
    if (!port.ok()) {
      clog.Error("cannot open the agent port; retrying", {{"error", port.error().ToString()}});
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    clog.Info("agent port open", {{"port", kSerialPortName}, {"waited_ms", std::to_string(waited.count())}});
    for (;;) {
      PortState s = PollPort(port->get(), 1000);
      if (s == PortState::kHostAbsent) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      if (s == PortState::kIdle) continue;
      int dup = ::fcntl(port->get(), F_DUPFD_CLOEXEC, 3);
      if (dup < 0) {
        clog.Error("dup agent port", {{"error", Error::Sys(errno, "dup").ToString()}});
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      clog.Info("host connected");
      Status st;
      {
        HangupWatcher watcher(port->get(), agent);
        st = server.ServeConnection(UniqueFd(dup));
      }
      if (st.ok())
        clog.Info("host disconnected");
      else
        clog.Warn("host connection ended", {{"error", st.error().ToString()}});
    }
  }
}

Status ServeVsock(rpc::Server& server, const Logger& log) {
  CASK_ASSIGN_OR_RETURN(UniqueFd listener, ListenVsock(kVsockPort));
  log.WithSubsystem("channel").Info("listening on vsock", {{"port", std::to_string(kVsockPort)}});
  return server.Serve(std::move(listener));
}

}  // namespace cask::agent
