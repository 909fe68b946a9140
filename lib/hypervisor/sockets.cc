#include "lib/hypervisor/sockets.h"

#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <thread>

#include "lib/hypervisor/hypervisor.h"

namespace cask::hypervisor {
namespace {

Error ConnectError(int err, const std::string& what) {
  if (err == ECONNREFUSED || err == ECONNRESET || err == ENODEV || err == EHOSTUNREACH || err == ENETUNREACH)
    return Error::Unavailable(what + ": " + std::strerror(err));
  // The socket is not there (yet): callers retry on NOT_FOUND.
  if (err == ENOENT) return Error::Sys(Code::kNotFound, err, what);
  if (err == ETIMEDOUT) return Error::Sys(Code::kDeadlineExceeded, err, what);
  return Error::Sys(err, what);
}

}  // namespace

Result<UniqueFd> ConnectUnixOnce(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return Error::InvalidArgument("unix socket path too long (" + std::to_string(path.size()) + " bytes, max " +
                                  std::to_string(sizeof(addr.sun_path) - 1) + "): " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::Sys(errno, "socket(AF_UNIX)");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return ConnectError(errno, "connect " + path);
  return fd;
}

Result<UniqueFd> ConnectVsockOnce(uint32_t cid, uint32_t port) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::Sys(errno, "socket(AF_VSOCK)");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0)
    return ConnectError(errno, "connect vsock " + std::to_string(cid) + ":" + std::to_string(port));
  return fd;
}

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  if (left > 1 << 30) return 1 << 30;
  return static_cast<int>(left);
}

Status WaitReadable(int fd, Clock::time_point deadline, const std::string& what) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, MillisLeft(deadline));
    if (rc > 0) return Ok();
    if (rc == 0) return Error::DeadlineExceeded("timed out waiting for " + what);
    if (errno != EINTR) return Error::Sys(errno, "poll (" + what + ")");
  }
}

Result<UniqueFd> ConnectAgentChannel(bool serial, const std::string& sock, uint32_t cid,
                                     std::chrono::milliseconds timeout,
                                     const std::function<std::optional<Error>(const std::string& what)>& abandon) {
  auto deadline = Clock::now() + timeout;
  std::string what = serial ? sock : "vsock " + std::to_string(cid) + ":" + std::to_string(kAgentVsockPort);
  for (;;) {
    if (auto gone = abandon(what)) return std::move(*gone);
    auto fd = serial ? ConnectUnixOnce(sock) : ConnectVsockOnce(cid, kAgentVsockPort);
    if (fd.ok()) return fd;
    Code c = fd.error().code();
    if (c != Code::kNotFound && c != Code::kUnavailable && c != Code::kDeadlineExceeded)
      return std::move(fd).error().Wrap("connect to the agent channel");
    if (Clock::now() >= deadline)
      return Error::DeadlineExceeded("agent channel " + what + " not connected within " +
                                     std::to_string(timeout.count()) + " ms: " + fd.error().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace cask::hypervisor
