#include "cmd/cask-agent/serve.h"

#include <fcntl.h>

#include <cerrno>
#include <thread>

#include "cmd/cask-agent/channel.h"

namespace cask::agent {

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
      // Only the connection's reader polls the port while it is served: a
      // second poller (a hang-up watcher) could take the reader's wake-up
      // (lib/rpc/fd_stream.h). The reader sees the hang-up itself (the
      // read ends); then calls still blocked are cancelled, and calls of
      // the connection that start later end at once (Agent::Limits).
      Status st = server.ServeConnection(UniqueFd(dup));
      agent.CancelBlockingCalls();
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
