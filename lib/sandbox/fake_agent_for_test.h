// A test double of cask-agent for unit tests: a real rpc::Server serving
// handlers the test registers, on one end of a socketpair whose other end
// goes to an AgentClient. Lets the host code be tested without a VM.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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
  void On(const std::string& method, std::function<Result<Resp>(const Req&)> fn,
          rpc::Lane lane = rpc::Lane::kShort) {
    server_.RegisterTyped<Req, Resp>(
        std::string(kAgentService), method, [fn = std::move(fn)](const rpc::CallContext&, const Req& r) { return fn(r); },
        lane);
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

// A scripted event stream: GetEvents replies with the batches the test
// pushes, in order (waiting up to the request's wait_ms for one), and
// records the acks and GrantOutput credits it receives. It plays a hostile
// agent as easily as an honest one: it sends exactly what it is given.
class EventFeed {
 public:
  // Registers GetEvents and GrantOutput on `fake` (before Serve()).
  void Attach(FakeAgent& fake) {
    fake.On<pb::GetEventsRequest, pb::GetEventsResponse>(
        "GetEvents",
        [this](const pb::GetEventsRequest& r) -> Result<pb::GetEventsResponse> {
          std::unique_lock<std::mutex> l(mu_);
          ++polls_;
          last_ack_ = r.ack();
          cv_.notify_all();
          cv_.wait_for(l, std::chrono::milliseconds(r.wait_ms()), [&] { return !queue_.empty() || stopped_; });
          if (queue_.empty()) return pb::GetEventsResponse();
          auto b = std::move(queue_.front());
          queue_.pop_front();
          return b;
        },
        rpc::Lane::kLong);
    fake.On<pb::GrantOutputRequest, pb::Empty>("GrantOutput", [this](const pb::GrantOutputRequest& r) -> Result<pb::Empty> {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& c : r.credits()) grants_.push_back(c);
      cv_.notify_all();
      return pb::Empty();
    });
  }
  // Queues a batch; a seq of 0 is replaced by the next sequence number.
  void Push(pb::GetEventsResponse b) {
    std::lock_guard<std::mutex> l(mu_);
    if (b.seq() == 0) b.set_seq(++seq_);
    queue_.push_back(std::move(b));
    cv_.notify_all();
  }
  // Ends waiting polls (call before the FakeAgent stops).
  void Stop() {
    std::lock_guard<std::mutex> l(mu_);
    stopped_ = true;
    cv_.notify_all();
  }
  // Waits until the client acked `seq` (it polls again after each batch).
  bool WaitAck(uint64_t seq, std::chrono::milliseconds within = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, within, [&] { return last_ack_ >= seq; });
  }
  std::vector<pb::OutputCredit> grants() {
    std::lock_guard<std::mutex> l(mu_);
    return grants_;
  }
  int polls() {
    std::lock_guard<std::mutex> l(mu_);
    return polls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<pb::GetEventsResponse> queue_;
  std::vector<pb::OutputCredit> grants_;
  uint64_t seq_ = 0;
  uint64_t last_ack_ = 0;
  int polls_ = 0;
  bool stopped_ = false;
};

inline pb::OutputChunk* AddOutput(pb::GetEventsResponse& b, const std::string& cid, const std::string& eid,
                                  pb::OutputStream stream, std::string data, bool eof) {
  auto* o = b.add_output();
  o->set_container_id(cid);
  o->set_exec_id(eid);
  o->set_stream(stream);
  o->set_data(std::move(data));
  o->set_eof(eof);
  return o;
}

inline void AddExit(pb::GetEventsResponse& b, const std::string& cid, const std::string& eid, int status) {
  auto* x = b.add_exits();
  x->set_container_id(cid);
  x->set_exec_id(eid);
  x->set_exit_status(status);
  x->set_exited_at_ns(42);
}

}  // namespace cask::sandbox::testing
