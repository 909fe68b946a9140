// ttrpc client (docs/protocol.md).
//
// Owns one connected byte stream. Many calls may be in flight at once from
// many threads: each gets the next odd stream id (1, 3, 5, ...); a reader
// thread matches responses to calls by stream id, in any order.
//
// A call with a timeout sends timeout_nano and also stops waiting locally
// when it expires (DEADLINE_EXCEEDED; a late response is dropped). When the
// stream closes, every pending and later call fails with UNAVAILABLE. A
// non-OK status in the response becomes an Error with that code and message
// (wrapped with "Service.Method"); a status code outside the gRPC range
// becomes UNKNOWN; the peer's status message is cut to 4 KiB. Requests over
// 4 MiB fail locally with RESOURCE_EXHAUSTED. Stream ids wrap after
// 0xffffffff; an id still held by a live call is skipped, never reused.
// Works over any fd that carries a byte stream (unix/vsock socket,
// virtio-serial character device).
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::rpc {

class Client {
 public:
  using Metadata = std::vector<std::pair<std::string, std::string>>;

  // Takes the connected fd (socket or character device) and starts the
  // reader thread. An unusable fd gives a client that is closed from the
  // start.
  explicit Client(UniqueFd fd);
  // Close() and join the reader. Must not run on the reader thread (i.e. not
  // from the OnClose callback).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Result<std::string> Call(std::string_view service, std::string_view method, std::string payload,
                           std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                           const Metadata& metadata = {});

  template <typename Resp, typename Req>
  Result<Resp> CallTyped(std::string_view service, std::string_view method, const Req& req,
                         std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    auto raw = Call(service, method, req.SerializeAsString(), timeout);
    if (!raw.ok()) return std::move(raw).error();
    Resp resp;
    if (!resp.ParseFromString(*raw))
      return Error::Internal("cannot parse response of " + std::string(service) + "." + std::string(method));
    return resp;
  }

  // Shuts the stream down; pending calls fail with UNAVAILABLE at once and
  // the reader closes the fd. Idempotent.
  void Close();
  bool closed() const;
  // Called once (from the reader thread) when the stream closes for any
  // reason (peer closed it, I/O error, Close()). Registered after that, it
  // runs at once on the caller's thread. A later registration replaces an
  // earlier one.
  void OnClose(std::function<void()> fn);

  // Test seam: the stream id the next call will try first (made odd).
  void SetNextStreamIdForTest(uint32_t id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cask::rpc
