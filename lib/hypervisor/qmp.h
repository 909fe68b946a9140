// A minimal QMP (QEMU Machine Protocol) client over a unix socket.
//
// QMP is line-delimited JSON: the server greets with {"QMP": {...}}, the
// client must send {"execute": "qmp_capabilities"} before any command, and
// every command gets exactly one reply, {"return": ...} or
// {"error": {"class": ..., "desc": ...}}. Asynchronous events
// ({"event": ...}) may arrive at any time and are collected, not returned as
// replies. Commands are sent one at a time (no pipelining), so replies need
// no id matching.
//
// Ownership: a QmpClient owns its socket. Not thread-safe: callers
// serialise (QemuVm holds a mutex around it).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::hypervisor {

class QmpClient {
 public:
  // Upper bound for one reply line: replies we ask for are small; the cap
  // keeps a confused peer from growing the buffer without limit.
  static constexpr size_t kMaxLine = 1 << 20;

  QmpClient() = default;

  // Connects to `path`, retrying while the socket does not exist or refuses
  // (QEMU creates it shortly after spawn), reads the greeting and
  // negotiates capabilities, all within `timeout`.
  static Result<QmpClient> Connect(const std::string& path, std::chrono::milliseconds timeout);
  // Same on an already-connected stream (tests use a socketpair).
  static Result<QmpClient> Handshake(UniqueFd fd, std::chrono::milliseconds timeout);

  // A connection that already negotiated capabilities (handed over by
  // another owner of the VM, lib/pool). No I/O.
  static QmpClient FromNegotiated(UniqueFd fd) { return QmpClient(std::move(fd)); }
  // Gives up the connection (for a handover); the client is closed after.
  // Buffered, unread bytes are dropped: call it between commands only.
  UniqueFd Release() {
    buf_.clear();
    return std::move(fd_);
  }

  // Executes `command` with `arguments` (omitted when null) and returns the
  // "return" value. A QMP error reply is an Error with the QMP class mapped
  // (CommandNotFound -> UNIMPLEMENTED, DeviceNotFound -> NOT_FOUND,
  // GenericError -> FAILED_PRECONDITION, else INTERNAL) and the message
  // "<command>: <desc> (<class>)". EOF before a reply is UNAVAILABLE.
  Result<nlohmann::json> Execute(std::string_view command, const nlohmann::json& arguments,
                                 std::chrono::milliseconds timeout);

  // "quit": returns once QEMU acknowledged or closed the connection.
  Status Quit(std::chrono::milliseconds timeout);

  // Events received so far (oldest first), and forgets them.
  std::vector<nlohmann::json> TakeEvents();

  bool connected() const { return fd_.valid(); }
  void Close() { fd_.Reset(); }

 private:
  explicit QmpClient(UniqueFd fd) : fd_(std::move(fd)) {}
  // Next JSON object that is not an event.
  Result<nlohmann::json> ReadReply(std::chrono::steady_clock::time_point deadline);
  Result<std::string> ReadLine(std::chrono::steady_clock::time_point deadline);
  Status Send(const nlohmann::json& msg);

  UniqueFd fd_;
  std::string buf_;
  std::vector<nlohmann::json> events_;
};

}  // namespace cask::hypervisor
