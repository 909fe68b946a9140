// ttrpc client (docs/protocol.md).
//
// Owns one connected byte stream. Many calls may be in flight at once from
// many threads: each gets the next odd stream id (1, 3, 5, ...); a reader
// thread matches responses to calls by stream id, in any order.
//
// A call with a timeout sends timeout_nano and also stops waiting locally
// when it expires (DEADLINE_EXCEEDED). When the stream closes, every pending
// and later call fails with UNAVAILABLE. A non-OK status in the response
// becomes an Error with that code and message.
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

  explicit Client(UniqueFd fd);
  ~Client();  // Close() and join the reader.
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

  // Shuts the stream down; pending calls fail with UNAVAILABLE.
  void Close();
  bool closed() const;
  // Called once (from the reader thread) when the stream closes for any reason.
  void OnClose(std::function<void()> fn);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cask::rpc
