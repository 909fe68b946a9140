// ttrpc server (docs/protocol.md).
//
// Serves unary calls on any connected byte stream: a unix socket, AF_VSOCK,
// or a virtio-serial port. Requests on one connection are handled
// concurrently by a pool of handler threads that grows on demand up to
// Options::max_concurrent_calls, so a handler that blocks (Wait, ReadStdout)
// never stalls the others; replies go back on the request's stream id in
// whatever order the handlers finish.
//
// Protocol behaviour (as containerd's ttrpc v1.1 server):
// - even stream ids are answered INVALID_ARGUMENT;
// - a message over 4 MiB is discarded and answered RESOURCE_EXHAUSTED;
// - an unknown service or method is answered UNIMPLEMENTED;
// - a request whose payload does not parse is answered INVALID_ARGUMENT;
// - timeout_nano becomes CallContext::deadline; when it passes before the
//   handler returns, the caller gets DEADLINE_EXCEEDED (the handler is told
//   through CallContext::Expired() and may stop early);
// - frames of other types are ignored.
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
#include "lib/base/unique_fd.h"

namespace cask::rpc {

struct CallContext {
  uint32_t stream_id = 0;
  std::string service;
  std::string method;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::vector<std::pair<std::string, std::string>> metadata;  // keys lower-case

  bool Expired() const { return deadline && std::chrono::steady_clock::now() >= *deadline; }
};

// Receives the request payload (serialized protobuf), returns the response
// payload or an Error whose code becomes the ttrpc status.
using MethodHandler = std::function<Result<std::string>(const CallContext&, const std::string& payload)>;

class Server {
 public:
  struct Options {
    size_t max_concurrent_calls = 256;  // per server, across connections
  };

  Server();
  explicit Server(Options opts);
  ~Server();  // Shutdown() and join everything.
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void Register(std::string service, std::string method, MethodHandler handler);

  // Typed registration for protobuf (lite) messages.
  template <typename Req, typename Resp>
  void RegisterTyped(std::string service, std::string method,
                     std::function<Result<Resp>(const CallContext&, const Req&)> fn) {
    Register(std::move(service), std::move(method),
             [fn = std::move(fn)](const CallContext& ctx, const std::string& payload) -> Result<std::string> {
               Req req;
               if (!req.ParseFromString(payload))
                 return Error::InvalidArgument("cannot parse " + ctx.service + "." + ctx.method + " request");
               auto resp = fn(ctx, req);
               if (!resp.ok()) return std::move(resp).error();
               return resp->SerializeAsString();
             });
  }

  // Serves one connected stream until the peer closes it, a read fails, or
  // Shutdown(). Blocks. Waits for the connection's in-flight handlers before
  // returning (their replies are dropped if the stream is gone).
  Status ServeConnection(UniqueFd fd);

  // Accept loop on a listening socket; each connection is served on its own
  // thread. Returns after Shutdown().
  Status Serve(UniqueFd listen_fd);

  // Stops accepting and closes every connection. Idempotent.
  void Shutdown();

  // Number of connections currently being served.
  size_t connection_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Helpers for listening on a unix socket path (removes a stale socket
// first, mode 0600).
Result<UniqueFd> ListenUnix(const std::string& path);
Result<UniqueFd> ConnectUnix(const std::string& path);

}  // namespace cask::rpc
