#include "lib/hypervisor/qmp.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "lib/hypervisor/sockets.h"

namespace cask::hypervisor {
namespace {

Error QmpError(std::string_view command, const nlohmann::json& err) {
  std::string cls = err.is_object() && err.contains("class") && err["class"].is_string()
                        ? err["class"].get<std::string>() : "unknown";
  std::string desc = err.is_object() && err.contains("desc") && err["desc"].is_string()
                         ? err["desc"].get<std::string>() : err.dump();
  std::string msg = "QMP " + std::string(command) + ": " + desc + " (" + cls + ")";
  if (cls == "CommandNotFound") return Error::Unimplemented(msg);
  if (cls == "DeviceNotFound") return Error::NotFound(msg);
  if (cls == "GenericError") return Error::FailedPrecondition(msg);
  return Error::Internal(msg);
}

}  // namespace

Result<QmpClient> QmpClient::Connect(const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto fd = ConnectUnixOnce(path);
    if (fd.ok()) {
      return Handshake(std::move(*fd), std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()))
          .Context("QMP handshake on " + path);
    }
    Code c = fd.error().code();
    if (c != Code::kNotFound && c != Code::kUnavailable) return std::move(fd).error();
    if (Clock::now() >= deadline)
      return Error::DeadlineExceeded("QMP socket " + path + " not ready after " + std::to_string(timeout.count()) +
                                     " ms: " + fd.error().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Result<QmpClient> QmpClient::Handshake(UniqueFd fd, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  QmpClient c(std::move(fd));
  CASK_ASSIGN_OR_RETURN(std::string line, c.ReadLine(deadline));
  nlohmann::json greeting = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!greeting.is_object() || !greeting.contains("QMP"))
    return Error::Internal("unexpected QMP greeting: " + line.substr(0, 200));
  CASK_TRY(c.Send({{"execute", "qmp_capabilities"}}));
  CASK_ASSIGN_OR_RETURN(nlohmann::json reply, c.ReadReply(deadline));
  if (reply.contains("error")) return QmpError("qmp_capabilities", reply["error"]);
  return c;
}

Status QmpClient::Send(const nlohmann::json& msg) {
  if (!fd_) return Error::FailedPrecondition("QMP connection is closed");
  std::string data = msg.dump() + "\n";
  std::string_view rest = data;
  while (!rest.empty()) {
    ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      if (err == EPIPE || err == ECONNRESET) return Error::Unavailable("QMP connection closed by QEMU");
      return Error::Sys(err, "write to QMP");
    }
    rest.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Result<std::string> QmpClient::ReadLine(Clock::time_point deadline) {
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (buf_.size() > kMaxLine)
      return Error::ResourceExhausted("QMP line longer than " + std::to_string(kMaxLine) + " bytes");
    if (!fd_) return Error::FailedPrecondition("QMP connection is closed");
    CASK_TRY(WaitReadable(fd_.get(), deadline, "a QMP reply"));
    char chunk[4096];
    ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return Error::Sys(errno, "read from QMP");
    if (n == 0) return Error::Unavailable("QMP connection closed by QEMU");
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

Result<nlohmann::json> QmpClient::ReadReply(Clock::time_point deadline) {
  for (;;) {
    CASK_ASSIGN_OR_RETURN(std::string line, ReadLine(deadline));
    if (line.empty()) continue;
    nlohmann::json msg = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (msg.is_discarded() || !msg.is_object())
      return Error::Internal("malformed QMP message: " + line.substr(0, 200));
    if (msg.contains("event")) {
      events_.push_back(std::move(msg));
      continue;
    }
    if (!msg.contains("return") && !msg.contains("error"))
      return Error::Internal("QMP message is neither a reply nor an event: " + line.substr(0, 200));
    return msg;
  }
}

Result<nlohmann::json> QmpClient::Execute(std::string_view command, const nlohmann::json& arguments,
                                          std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  nlohmann::json msg = {{"execute", command}};
  if (!arguments.is_null()) msg["arguments"] = arguments;
  CASK_TRY_CTX(Send(msg), "QMP " + std::string(command));
  auto reply = ReadReply(deadline);
  if (!reply.ok()) return std::move(reply).error().Wrap("QMP " + std::string(command));
  if (reply->contains("error")) return QmpError(command, (*reply)["error"]);
  return (*reply)["return"];
}

Status QmpClient::Quit(std::chrono::milliseconds timeout) {
  auto r = Execute("quit", nullptr, timeout);
  // QEMU may close the socket before (or instead of) the reply reaches us.
  if (!r.ok() && r.error().code() != Code::kUnavailable) return std::move(r).error();
  return Ok();
}

std::vector<nlohmann::json> QmpClient::TakeEvents() { return std::exchange(events_, {}); }

}  // namespace cask::hypervisor
