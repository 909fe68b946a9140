// ttrpc server (docs/protocol.md).
//
// Serves unary calls on any connected byte stream: a unix socket, AF_VSOCK,
// or a virtio-serial port (a character device: one fd read and written).
// Requests on one connection are handled concurrently by handler threads;
// replies go back on the request's stream id in whatever order the handlers
// finish. Each method is registered in a lane, and each lane has its own
// pool that grows on demand: kShort for calls the handler answers promptly
// (up to Options::max_concurrent_calls threads), kLong for calls that block
// by design, such as a long poll (up to Options::max_long_calls). A long call
// therefore never delays a short one, however many long calls block.
// Writes of whole frames are serialised per connection.
//
// Protocol behaviour (as containerd's ttrpc v1.1 server):
// - even stream ids are answered INVALID_ARGUMENT "StreamID must be odd for
//   client initiated streams";
// - a message over 4 MiB is discarded and answered RESOURCE_EXHAUSTED on its
//   stream; the connection stays usable;
// - an unknown service or method is answered UNIMPLEMENTED "service X" /
//   "method Y";
// - a request envelope that does not parse is answered INVALID_ARGUMENT, and
//   so is (with RegisterTyped) a request message that does not parse;
// - timeout_nano becomes CallContext::deadline; when it passes before the
//   handler returns, the caller gets DEADLINE_EXCEEDED at once (the handler
//   keeps its thread until it returns; it can notice through
//   CallContext::Expired() and stop early, and whatever it returns after the
//   deadline is replaced by -- or dropped after -- DEADLINE_EXCEEDED). A call
//   whose deadline passed before a thread picked it up is not run at all;
// - frames of other types (Response, Data) are ignored.
// An Error returned by a handler travels as its code and ToString() message.
//
// Thread safety: Register before serving; Serve/ServeConnection/Shutdown may
// be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/thread_annotations.h"
#include "lib/base/unique_fd.h"

namespace cask::rpc {

struct CallContext {
  uint32_t stream_id = 0;
  std::string service;
  std::string method;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::vector<std::pair<std::string, std::string>> metadata;  // keys lower-case
  // Set when the connection that carried the call is gone or the server is
  // shutting down: nobody will read the reply.
  std::shared_ptr<const std::atomic<bool>> cancelled;

  bool Expired() const { return deadline && std::chrono::steady_clock::now() >= *deadline; }
  bool Cancelled() const { return cancelled && cancelled->load(); }
};

// Receives the request payload (serialized protobuf), returns the response
// payload or an Error whose code becomes the ttrpc status.
using MethodHandler = std::function<Result<std::string>(const CallContext&, const std::string& payload)>;

// Which handler pool runs a method (see the file comment).
enum class Lane { kShort, kLong };

class Server {
 public:
  struct Options {
    // Handler threads of the short lane, per server, across connections.
    // Calls beyond it wait in FIFO order for a free thread.
    size_t max_concurrent_calls = 256;
    // Handler threads of the long lane. Long calls beyond it wait for one of
    // them (never for a short-lane thread, and never delaying short calls).
    size_t max_long_calls = 32;
    // Told why a connection accepted by Serve() ended, when that was not a
    // clean close or Shutdown(). Called from the connection's thread.
    std::function<void(const Error&)> on_connection_error;
  };

  Server();
  explicit Server(Options opts);
  // Shutdown(), then waits for every Serve/ServeConnection to return and for
  // every running handler to return: a handler blocked forever blocks this
  // too, so owners of blocking handlers release them first. Must not run on
  // a handler thread.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void Register(std::string service, std::string method, MethodHandler handler, Lane lane = Lane::kShort);

  // Typed registration for protobuf (lite) messages.
  template <typename Req, typename Resp>
  void RegisterTyped(std::string service, std::string method,
                     std::function<Result<Resp>(const CallContext&, const Req&)> fn, Lane lane = Lane::kShort) {
    Register(std::move(service), std::move(method),
             [fn = std::move(fn)](const CallContext& ctx, const std::string& payload) -> Result<std::string> {
               Req req;
               if (!req.ParseFromString(payload))
                 return Error::InvalidArgument("cannot parse " + ctx.service + "." + ctx.method + " request");
               auto resp = fn(ctx, req);
               if (!resp.ok()) return std::move(resp).error();
               return resp->SerializeAsString();
             },
             lane);
  }

  // Serves one connected stream until the peer closes it (end of stream), a
  // read or write fails, or Shutdown(). Blocks; returns OK for the first and
  // the last, the I/O error otherwise. Closes the fd before returning. Does
  // not wait for the connection's in-flight handlers: they are told through
  // CallContext::Cancelled() and their replies are dropped (a blocked
  // WaitProcess must not keep the channel from being served again). Returns
  // OK at once after Shutdown().
  Status ServeConnection(UniqueFd fd);

  // Accept loop on a listening socket; each connection is served on its own
  // thread. Returns after Shutdown().
  Status Serve(UniqueFd listen_fd);

  // Stops accepting and closes every connection: every Serve and
  // ServeConnection returns soon after. Does not wait for handlers (the
  // destructor does). Idempotent.
  void Shutdown();

  // Number of connections currently being served.
  size_t connection_count() const;
  // Handler threads alive in each lane (for tests and benchmarks).
  size_t thread_count(Lane lane) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Helpers for unix stream sockets (close-on-exec). ListenUnix removes a
// stale socket at `path` first; a socket someone still accepts on, or any
// other file, is ALREADY_EXISTS. It creates the socket mode 0600. Errors
// name the path and keep the errno.
Result<UniqueFd> ListenUnix(const std::string& path);
Result<UniqueFd> ConnectUnix(const std::string& path);

}  // namespace cask::rpc
