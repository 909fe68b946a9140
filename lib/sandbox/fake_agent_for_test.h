// A test double of cask-agent for unit tests: a real rpc::Server serving
// handlers the test registers, on one end of a socketpair whose other end
// goes to an AgentClient. Lets the host code be tested without a VM.
#pragma once

#include <sys/socket.h>

#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "lib/base/unique_fd.h"
#include "lib/rpc/server.h"
#include "lib/sandbox/agent_client.h"
#include "proto/agent.pb.h"

namespace cask::sandbox::testing {

namespace pb = ::cask::agent::v1;

class FakeAgent {
 public:
  FakeAgent() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
      server_end_.Reset(sv[0]);
      client_end_.Reset(sv[1]);
    }
  }
  ~FakeAgent() { Stop(); }

  template <typename Req, typename Resp>
  void On(const std::string& method, std::function<Result<Resp>(const Req&)> fn) {
    server_.RegisterTyped<Req, Resp>(std::string(kAgentService), method,
                                     [fn = std::move(fn)](const rpc::CallContext&, const Req& r) { return fn(r); });
  }

  // The end for the AgentClient. Call once.
  UniqueFd TakeClientEnd() { return std::move(client_end_); }

  // Starts answering (requests sent before are buffered by the socket, as
  // on a virtio-serial port the guest has not opened yet).
  void Serve() {
    thread_ = std::thread([this, fd = std::move(server_end_)]() mutable { (void)server_.ServeConnection(std::move(fd)); });
  }
  // Closes the agent's end without serving: the client sees the channel close.
  void CloseWithoutServing() { server_end_.Reset(); }

  void Stop() {
    server_.Shutdown();
    if (thread_.joinable()) thread_.join();
  }

 private:
  rpc::Server server_;
  UniqueFd server_end_, client_end_;
  std::thread thread_;
};

}  // namespace cask::sandbox::testing
