#include "lib/shim/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "lib/base/fs.h"
#include "lib/rpc/server.h"
#include "lib/shim/address.h"

namespace cask::shim {
namespace {

// containerd reads <bundle>/log (a FIFO it holds open for reading) and copies
// each line into its own log. Opening non-blocking fails with ENXIO rather
// than hanging when nobody reads; writes are then made blocking so lines are
// not lost while containerd is busy.
UniqueFd OpenLogPipe(const std::string& bundle) {
  int fd = ::open(JoinPath(bundle, "log").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return UniqueFd();
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  return UniqueFd(fd);
}

std::string SocketPathOf(int fd) {
  sockaddr_un sa{};
  socklen_t len = sizeof(sa);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || sa.sun_family != AF_UNIX) return "";
  if (len <= offsetof(sockaddr_un, sun_path) || sa.sun_path[0] == '\0') return "";  // unnamed or abstract
  return std::string(sa.sun_path, strnlen(sa.sun_path, sizeof(sa.sun_path)));
}

class ExitLatch {
 public:
  void Trigger(std::string why) {
    std::lock_guard lk(mu_);
    if (!triggered_) {
      triggered_ = true;
      why_ = std::move(why);
    }
    cv_.notify_all();
  }
  std::string Wait() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return triggered_; });
    return why_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool triggered_ = false;
  std::string why_;
};

}  // namespace

int RunDaemon(const DaemonParams& params, const ServiceFactory& factory) {
  // Signals: SIGPIPE ignored (a reader of a FIFO or socket may go away);
  // SIGTERM/SIGINT blocked in every thread and taken by sigwait below.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  UniqueFd log_fd = OpenLogPipe(params.bundle);
  if (log_fd) ::dup2(log_fd.get(), STDERR_FILENO);  // stray stderr lands in containerd's log too
  Logger log(log_fd ? log_fd.get() : -1, params.flags.debug ? LogLevel::kDebug : LogLevel::kInfo, "shim");
  log = log.With("runtime", "io.containerd.cask.v2").With("namespace", params.flags.ns);

  UniqueFd listen_fd;
  if (!params.flags.socket.empty()) {
    auto path = SocketPath(params.flags.socket);
    if (!path.ok()) {
      log.Error("bad -socket", {{"error", path.error().ToString()}});
      return 1;
    }
    auto fd = rpc::ListenUnix(*path);
    if (!fd.ok()) {
      log.Error("cannot listen", {{"error", fd.error().ToString()}});
      return 1;
    }
    listen_fd = std::move(fd).value();
  } else {
    listen_fd.Reset(params.listen_fd);
    ::fcntl(listen_fd.get(), F_SETFD, FD_CLOEXEC);
  }
  const std::string socket_path = SocketPathOf(listen_fd.get());

  EventPublisher events({.ttrpc_address = params.ttrpc_address, .ns = params.flags.ns}, log.WithSubsystem("events"));
  ExitLatch latch;

  DaemonContext ctx;
  ctx.flags = params.flags;
  ctx.bundle = params.bundle;
  ctx.socket_path = socket_path;
  ctx.log = log;
  ctx.events = &events;
  ctx.request_exit = [&latch] { latch.Trigger("shutdown requested"); };

  auto service = factory(ctx);
  if (!service.ok()) {
    log.Error("cannot start task service", {{"error", service.error().ToString()}});
    if (!socket_path.empty()) ::unlink(socket_path.c_str());
    return 1;
  }

  rpc::Server server;
  (*service)->Register(server);
  std::thread serve_thread([&] {
    Status st = server.Serve(std::move(listen_fd));
    if (!st.ok()) log.Error("ttrpc server failed", {{"error", st.error().ToString()}});
    latch.Trigger("server stopped");
  });
  std::thread signal_thread([&] {
    for (;;) {
      int sig = 0;
      if (sigwait(&sigs, &sig) != 0) continue;
      if (sig == SIGTERM || sig == SIGINT) {
        latch.Trigger(std::string("signal ") + strsignal(sig));
        return;
      }
    }
  });

  log.Info("shim started", {{"pid", std::to_string(::getpid())}, {"socket", socket_path}});
  std::string why = latch.Wait();
  log.Info("shim exiting", {{"reason", why}});

  // Let the reply of the Shutdown call that got us here reach containerd;
  // it treats a connection closed during Shutdown as success anyway.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // Stop the service first: it ends calls that block by design (Wait), which
  // the server would otherwise wait for.
  (*service)->Stop();
  server.Shutdown();
  serve_thread.join();
  service->reset();
  events.Close(std::chrono::seconds(3));
  if (!socket_path.empty()) ::unlink(socket_path.c_str());

  // The signal thread may still sit in sigwait: wake it.
  ::kill(::getpid(), SIGTERM);
  signal_thread.join();
  return 0;
}

}  // namespace cask::shim
