// Server and client over socketpairs, unix sockets and a pty (a character
// device), plus raw-frame tests of the server's protocol behaviour.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/rpc/client.h"
#include "lib/rpc/frame.h"
#include "lib/rpc/server.h"
#include "lib/rpc/ttrpc.pb.h"

namespace cask::rpc {
namespace {

using namespace std::chrono_literals;
constexpr auto kWait = 10s;  // generous bound so a bug fails instead of hanging

std::pair<UniqueFd, UniqueFd> SocketPair() {
  int fds[2];
  EXPECT_EQ(0, ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// A gate handlers block on until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  // Waits until opened or `ctx` expires/is cancelled; true if opened.
  bool Wait(const CallContext* ctx = nullptr) {
    std::unique_lock<std::mutex> l(mu);
    while (!open) {
      if (ctx && (ctx->Expired() || ctx->Cancelled())) return false;
      cv.wait_for(l, 5ms);
    }
    return true;
  }
  void Open() {
    std::lock_guard<std::mutex> l(mu);
    open = true;
    cv.notify_all();
  }
};

// A server serving one end of a socketpair on a thread.
struct Served {
  explicit Served(Server& s, UniqueFd fd) {
    done = std::async(std::launch::async, [&s, f = std::move(fd)]() mutable { return s.ServeConnection(std::move(f)); });
  }
  bool Finished(std::chrono::milliseconds within) { return done.wait_for(within) == std::future_status::ready; }
  std::future<Status> done;
};

// The test side of a connection speaking raw frames.
struct RawPeer {
  explicit RawPeer(UniqueFd f) : fd(std::move(f)) {}
  UniqueFd fd;
  FrameDecoder decoder;

  void Send(const std::string& bytes) {
    std::string_view left = bytes;
    while (!left.empty()) {
      ssize_t n = ::write(fd.get(), left.data(), left.size());
      ASSERT_GT(n, 0) << "write: " << strerror(errno);
      left.remove_prefix(static_cast<size_t>(n));
    }
  }
  void SendFrame(uint32_t sid, uint8_t type, const std::string& payload) {
    FrameHeader h;
    h.stream_id = sid;
    h.type = type;
    auto f = EncodeFrame(h, payload);
    ASSERT_TRUE(f.ok());
    Send(*f);
  }
  void SendRequest(uint32_t sid, const std::string& service, const std::string& method,
                   const std::string& payload = "", int64_t timeout_nano = 0) {
    ttrpc::Request req;
    req.set_service(service);
    req.set_method(method);
    req.set_payload(payload);
    req.set_timeout_nano(timeout_nano);
    SendFrame(sid, 1, req.SerializeAsString());
  }
  // The next frame, or nullopt after `within` or at EOF.
  std::optional<Frame> Read(std::chrono::milliseconds within = kWait) {
    auto until = std::chrono::steady_clock::now() + within;
    for (;;) {
      if (auto f = decoder.Next()) return f;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      struct pollfd p = {fd.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      decoder.Feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  // The next response, parsed.
  std::optional<std::pair<uint32_t, ttrpc::Response>> ReadResponse(std::chrono::milliseconds within = kWait) {
    auto f = Read(within);
    if (!f) return std::nullopt;
    EXPECT_EQ(f->header.type, 2);
    ttrpc::Response r;
    EXPECT_TRUE(r.ParseFromString(f->payload));
    return std::make_pair(f->header.stream_id, r);
  }
};

const char kSvc[] = "test.v1.Echo";

void RegisterEcho(Server& s) {
  s.Register(kSvc, "Echo", [](const CallContext&, const std::string& p) -> Result<std::string> { return p; });
  s.Register(kSvc, "Fail", [](const CallContext&, const std::string& p) -> Result<std::string> {
    return Error::NotFound("no such thing: " + p);
  });
}

TEST(Rpc, EchoRoundTrip) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  auto r = client.Call(kSvc, "Echo", "hello");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, "hello");
  auto empty = client.Call(kSvc, "Echo", "");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
  std::string big(kMaxMessageLength - 1024, 'b');
  auto rb = client.Call(kSvc, "Echo", big);
  ASSERT_TRUE(rb.ok()) << rb.error().ToString();
  EXPECT_EQ(*rb, big);
}

TEST(Rpc, HandlerErrorKeepsCodeAndMessage) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  auto r = client.Call(kSvc, "Fail", "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_EQ(r.error().message(), "no such thing: x");
}

TEST(Rpc, UnknownServiceAndMethodAreUnimplemented) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  auto r1 = client.Call("no.such.Service", "Echo", "");
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.error().code(), Code::kUnimplemented);
  EXPECT_EQ(r1.error().message(), "service no.such.Service");
  auto r2 = client.Call(kSvc, "Nope", "");
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code(), Code::kUnimplemented);
  EXPECT_EQ(r2.error().message(), "method Nope");
}

TEST(Rpc, TypedCalls) {
  Server server;
  server.RegisterTyped<ttrpc::KeyValue, ttrpc::KeyValue>(
      kSvc, "Swap", [](const CallContext&, const ttrpc::KeyValue& kv) -> Result<ttrpc::KeyValue> {
        ttrpc::KeyValue out;
        out.set_key(kv.value());
        out.set_value(kv.key());
        return out;
      });
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  ttrpc::KeyValue in;
  in.set_key("k");
  in.set_value("v");
  auto r = client.CallTyped<ttrpc::KeyValue>(kSvc, "Swap", in);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->key(), "v");
  EXPECT_EQ(r->value(), "k");
  // A payload that is not a KeyValue: INVALID_ARGUMENT from RegisterTyped.
  auto bad = client.Call(kSvc, "Swap", std::string("\xff\xff\xff", 3));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
}

TEST(Rpc, MetadataReachesHandlerLowerCased) {
  Server server;
  std::vector<std::pair<std::string, std::string>> seen;
  server.Register(kSvc, "Md", [&](const CallContext& ctx, const std::string&) -> Result<std::string> {
    seen = ctx.metadata;
    EXPECT_EQ(ctx.service, kSvc);
    EXPECT_EQ(ctx.method, "Md");
    EXPECT_EQ(ctx.stream_id % 2, 1u);
    return std::string();
  });
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  ASSERT_TRUE(client.Call(kSvc, "Md", "", std::nullopt, {{"Containerd-Namespace-TTRPC", "k8s.io"}, {"x", "1"}}).ok());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "containerd-namespace-ttrpc");
  EXPECT_EQ(seen[0].second, "k8s.io");
  EXPECT_EQ(seen[1].first, "x");
}

TEST(RpcRaw, ClientStreamIdsAreOddAndIncreasing) {
  auto [a, b] = SocketPair();
  RawPeer server(std::move(a));
  Client client(std::move(b));
  auto c1 = std::async(std::launch::async, [&] { return client.Call(kSvc, "Echo", "1"); });
  auto f1 = server.Read();
  ASSERT_TRUE(f1);
  auto c2 = std::async(std::launch::async, [&] { return client.Call(kSvc, "Echo", "2"); });
  auto f2 = server.Read();
  ASSERT_TRUE(f2);
  EXPECT_EQ(f1->header.stream_id, 1u);
  EXPECT_EQ(f2->header.stream_id, 3u);
  EXPECT_EQ(f1->header.type, 1);
  EXPECT_EQ(f1->header.flags, 0);
  ttrpc::Request req;
  ASSERT_TRUE(req.ParseFromString(f1->payload));
  EXPECT_EQ(req.service(), kSvc);
  EXPECT_EQ(req.method(), "Echo");
  EXPECT_EQ(req.payload(), "1");
  EXPECT_EQ(req.timeout_nano(), 0);
  // Answer out of order: the client matches by stream id.
  ttrpc::Response r2;
  r2.set_payload("two");
  server.SendFrame(3, 2, r2.SerializeAsString());
  ttrpc::Response r1;
  r1.set_payload("one");  // no status at all counts as OK
  server.SendFrame(1, 2, r1.SerializeAsString());
  ASSERT_EQ(c2.wait_for(kWait), std::future_status::ready);
  ASSERT_EQ(c1.wait_for(kWait), std::future_status::ready);
  auto v1 = c1.get();
  auto v2 = c2.get();
  ASSERT_TRUE(v1.ok());
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(*v1, "one");
  EXPECT_EQ(*v2, "two");
}

TEST(RpcRaw, EvenStreamIdIsInvalidArgument) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  peer.SendRequest(2, kSvc, "Echo", "x");
  auto r = peer.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 2u);
  EXPECT_EQ(r->second.status().code(), static_cast<int>(Code::kInvalidArgument));
  EXPECT_EQ(r->second.status().message(), "StreamID must be odd for client initiated streams");
  // The connection still serves odd streams.
  peer.SendRequest(1, kSvc, "Echo", "ok");
  auto ok = peer.ReadResponse();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->first, 1u);
  EXPECT_EQ(ok->second.status().code(), 0);
  EXPECT_EQ(ok->second.payload(), "ok");
}

TEST(RpcRaw, OversizedRequestIsResourceExhaustedAndConnectionSurvives) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  const uint32_t len = kMaxMessageLength + 1;
  FrameHeader h{len, 5, 1, 0};
  char hdr[kHeaderSize];
  EncodeHeader(h, hdr);
  // Write the oversized frame from another thread (the socket buffer is
  // smaller than the payload) while this one reads the answer.
  std::thread writer([&, fd = peer.fd.get()] {
    std::string junk(len, 'j');
    std::string all = std::string(hdr, kHeaderSize) + junk;
    std::string_view left = all;
    while (!left.empty()) {
      ssize_t n = ::write(fd, left.data(), left.size());
      if (n <= 0) return;
      left.remove_prefix(static_cast<size_t>(n));
    }
  });
  auto r = peer.ReadResponse();
  writer.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 5u);
  EXPECT_EQ(r->second.status().code(), static_cast<int>(Code::kResourceExhausted));
  EXPECT_NE(r->second.status().message().find("exceed maximum message size"), std::string::npos);
  peer.SendRequest(7, kSvc, "Echo", "after");
  auto ok = peer.ReadResponse();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->first, 7u);
  EXPECT_EQ(ok->second.status().code(), 0);
  EXPECT_EQ(ok->second.payload(), "after");
}

TEST(RpcRaw, GarbageRequestIsInvalidArgument) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  peer.SendFrame(9, 1, std::string("\x0a\xff\xff\xff\xff\x0f", 6));  // truncated length-delimited field
  auto r = peer.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 9u);
  EXPECT_EQ(r->second.status().code(), static_cast<int>(Code::kInvalidArgument));
}

TEST(RpcRaw, NonRequestFramesAreIgnored) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  peer.SendFrame(1, 2, "response?");
  peer.SendFrame(3, 3, "data");
  peer.SendFrame(5, 77, "future");
  peer.SendRequest(7, kSvc, "Echo", "real");
  auto r = peer.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 7u);
  EXPECT_EQ(r->second.payload(), "real");
}

TEST(RpcRaw, RepliesComeOutOfOrder) {
  Server server;
  Gate gate;
  server.Register(kSvc, "Block", [&](const CallContext&, const std::string&) -> Result<std::string> {
    gate.Wait();
    return std::string("late");
  });
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  peer.SendRequest(1, kSvc, "Block");
  peer.SendRequest(3, kSvc, "Echo", "early");
  auto first = peer.ReadResponse();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->first, 3u);
  EXPECT_EQ(first->second.payload(), "early");
  gate.Open();
  auto second = peer.ReadResponse();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->first, 1u);
  EXPECT_EQ(second->second.payload(), "late");
}

TEST(RpcRaw, TimeoutNanoGivesDeadlineExceededWhileHandlerBlocks) {
  Server server;
  Gate gate;  // never opened while the deadline runs
  std::atomic<bool> saw_deadline{false};
  std::promise<bool> handler_noticed;
  server.Register(kSvc, "Block", [&](const CallContext& ctx, const std::string&) -> Result<std::string> {
    saw_deadline = ctx.deadline.has_value();
    bool opened = gate.Wait(&ctx);
    handler_noticed.set_value(!opened && ctx.Expired());
    return std::string("too late");
  });
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  auto start = std::chrono::steady_clock::now();
  peer.SendRequest(1, kSvc, "Block", "", std::chrono::nanoseconds(200ms).count());
  auto r = peer.ReadResponse();
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 1u);
  EXPECT_EQ(r->second.status().code(), static_cast<int>(Code::kDeadlineExceeded));
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, kWait);  // the deadline answered; without it the call never ends
  EXPECT_TRUE(saw_deadline.load());
  auto noticed = handler_noticed.get_future();
  ASSERT_EQ(noticed.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(noticed.get());
  // The handler's late reply is dropped: the next frame answers stream 3.
  peer.SendRequest(3, kSvc, "Echo", "next");
  auto n = peer.ReadResponse();
  ASSERT_TRUE(n);
  EXPECT_EQ(n->first, 3u);
  EXPECT_EQ(n->second.payload(), "next");
}

TEST(RpcRaw, NegativeTimeoutIsAlreadyExpired) {
  Server server;
  RegisterEcho(server);
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  peer.SendRequest(1, kSvc, "Echo", "x", -5);
  auto r = peer.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->second.status().code(), static_cast<int>(Code::kDeadlineExceeded));
}

TEST(Rpc, ManyConcurrentCallsWhileOneBlocks) {
  Server server;
  Gate gate;
  server.Register(kSvc, "Block", [&](const CallContext&, const std::string&) -> Result<std::string> {
    gate.Wait();
    return std::string("released");
  });
  server.Register(kSvc, "Slow", [](const CallContext&, const std::string& p) -> Result<std::string> {
    // Finish in reverse order of arrival, more or less.
    std::this_thread::sleep_for(std::chrono::milliseconds(50 - std::stoi(p) % 50));
    return p;
  });
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  auto blocked = std::async(std::launch::async, [&] { return client.Call(kSvc, "Block", ""); });
  std::vector<std::future<Result<std::string>>> calls;
  for (int i = 0; i < 64; ++i)
    calls.push_back(std::async(std::launch::async, [&, i] { return client.Call(kSvc, "Slow", std::to_string(i)); }));
  for (int i = 0; i < 64; ++i) {
    ASSERT_EQ(calls[i].wait_for(kWait), std::future_status::ready) << i;
    auto r = calls[i].get();
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    EXPECT_EQ(*r, std::to_string(i));
  }
  EXPECT_EQ(blocked.wait_for(10ms), std::future_status::timeout);
  gate.Open();
  ASSERT_EQ(blocked.wait_for(kWait), std::future_status::ready);
  auto br = blocked.get();
  ASSERT_TRUE(br.ok());
  EXPECT_EQ(*br, "released");
}

TEST(Rpc, ClientLocalTimeout) {
  auto [a, b] = SocketPair();
  RawPeer server(std::move(a));  // reads requests, answers late
  Client client(std::move(b));
  auto start = std::chrono::steady_clock::now();
  auto r = client.Call(kSvc, "Echo", "x", 100ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  auto f = server.Read();
  ASSERT_TRUE(f);
  ttrpc::Request req;
  ASSERT_TRUE(req.ParseFromString(f->payload));
  EXPECT_EQ(req.timeout_nano(), std::chrono::nanoseconds(100ms).count());
  // A late answer to the abandoned call is dropped; the next call works.
  ttrpc::Response late;
  late.set_payload("late");
  server.SendFrame(f->header.stream_id, 2, late.SerializeAsString());
  auto next = std::async(std::launch::async, [&] { return client.Call(kSvc, "Echo", "y", 5s); });
  auto f2 = server.Read();
  ASSERT_TRUE(f2);
  ttrpc::Response ok;
  ok.set_payload("fresh");
  server.SendFrame(f2->header.stream_id, 2, ok.SerializeAsString());
  ASSERT_EQ(next.wait_for(kWait), std::future_status::ready);
  auto nr = next.get();
  ASSERT_TRUE(nr.ok()) << nr.error().ToString();
  EXPECT_EQ(*nr, "fresh");
}

TEST(Rpc, ClientSeesUnavailableWhenServerGoesAway) {
  auto server = std::make_unique<Server>();
  Gate gate;
  server->Register(kSvc, "Block", [&](const CallContext& ctx, const std::string&) -> Result<std::string> {
    gate.Wait(&ctx);
    return std::string();
  });
  auto [a, b] = SocketPair();
  Served served(*server, std::move(a));
  Client client(std::move(b));
  std::promise<void> closed;
  client.OnClose([&] { closed.set_value(); });
  auto pending = std::async(std::launch::async, [&] { return client.Call(kSvc, "Block", ""); });
  EXPECT_EQ(pending.wait_for(100ms), std::future_status::timeout);
  server->Shutdown();
  ASSERT_EQ(pending.wait_for(kWait), std::future_status::ready);
  auto r = pending.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  ASSERT_EQ(closed.get_future().wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(client.closed());
  auto later = client.Call(kSvc, "Block", "");
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().code(), Code::kUnavailable);
  ASSERT_TRUE(served.Finished(kWait));
  EXPECT_TRUE(served.done.get().ok());
  server.reset();  // joins the (cancelled) handler
}

TEST(Rpc, ClientSeesUnavailableWhenPeerCloses) {
  auto [a, b] = SocketPair();
  Client client(std::move(b));
  auto pending = std::async(std::launch::async, [&] { return client.Call(kSvc, "Echo", "x"); });
  std::this_thread::sleep_for(50ms);
  a.Reset();
  ASSERT_EQ(pending.wait_for(kWait), std::future_status::ready);
  auto r = pending.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  // OnClose registered after the close runs at once.
  bool ran = false;
  client.OnClose([&] { ran = true; });
  EXPECT_TRUE(ran);
}

TEST(Rpc, ClientCloseFailsPendingCalls) {
  auto [a, b] = SocketPair();
  Client client(std::move(b));
  RawPeer peer(std::move(a));
  auto pending = std::async(std::launch::async, [&] { return client.Call(kSvc, "Echo", "x"); });
  ASSERT_TRUE(peer.Read());  // the request is out; its answer never comes
  client.Close();
  ASSERT_EQ(pending.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(pending.get().error().code(), Code::kUnavailable);
  EXPECT_TRUE(client.closed());
  // The reader closed its fd: the peer sees end of stream.
  EXPECT_FALSE(peer.Read(kWait).has_value());
}

TEST(Rpc, HandlerSeesCancelledWhenConnectionEnds) {
  Server server;
  std::promise<bool> cancelled;
  std::promise<void> entered;
  server.Register(kSvc, "Block", [&](const CallContext& ctx, const std::string&) -> Result<std::string> {
    entered.set_value();
    auto until = std::chrono::steady_clock::now() + kWait;
    while (!ctx.Cancelled() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
    cancelled.set_value(ctx.Cancelled());
    return std::string();
  });
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  RawPeer peer(std::move(b));
  peer.SendRequest(1, kSvc, "Block");
  ASSERT_EQ(entered.get_future().wait_for(kWait), std::future_status::ready);
  peer.fd.Reset();
  // ServeConnection returns without waiting for the blocked handler.
  ASSERT_TRUE(served.Finished(kWait));
  auto c = cancelled.get_future();
  ASSERT_EQ(c.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(c.get());
}

TEST(Rpc, ShutdownUnblocksIdleServeConnection) {
  Server server;
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  auto until = std::chrono::steady_clock::now() + kWait;
  while (server.connection_count() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(server.connection_count(), 1u);
  EXPECT_FALSE(served.Finished(50ms));
  server.Shutdown();
  ASSERT_TRUE(served.Finished(kWait));
  EXPECT_TRUE(served.done.get().ok());
  EXPECT_EQ(server.connection_count(), 0u);
  // The server closed its end.
  char c;
  EXPECT_EQ(::read(b.get(), &c, 1), 0);
  // Serving after Shutdown returns at once.
  auto [x, y] = SocketPair();
  EXPECT_TRUE(server.ServeConnection(std::move(x)).ok());
}

std::string TempSocketPath(const char* name) {
  char dir[] = "/tmp/cask-rpc-test-XXXXXX";
  EXPECT_NE(nullptr, ::mkdtemp(dir));
  return std::string(dir) + "/" + name;
}

TEST(Rpc, ServeOnUnixSocketWithSeveralClients) {
  std::string path = TempSocketPath("s.sock");
  auto server = std::make_unique<Server>();
  RegisterEcho(*server);
  auto lfd = ListenUnix(path);
  ASSERT_TRUE(lfd.ok()) << lfd.error().ToString();
  struct stat st;
  ASSERT_EQ(0, ::stat(path.c_str(), &st));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto serving = std::async(std::launch::async, [&, fd = std::move(*lfd)]() mutable { return server->Serve(std::move(fd)); });
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    auto fd = ConnectUnix(path);
    ASSERT_TRUE(fd.ok()) << fd.error().ToString();
    clients.push_back(std::make_unique<Client>(std::move(*fd)));
  }
  for (int i = 0; i < 3; ++i) {
    auto r = clients[i]->Call(kSvc, "Echo", "c" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.error().ToString();
    EXPECT_EQ(*r, "c" + std::to_string(i));
  }
  EXPECT_EQ(server->connection_count(), 3u);
  server->Shutdown();
  ASSERT_EQ(serving.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(serving.get().ok());
  for (auto& c : clients) {
    auto r = c->Call(kSvc, "Echo", "after", 5s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), Code::kUnavailable);
  }
  server.reset();
  // ListenUnix replaces a stale socket, refuses a live one and a regular file.
  auto again = ListenUnix(path);
  ASSERT_TRUE(again.ok());
  auto live = ListenUnix(path);
  ASSERT_FALSE(live.ok());
  EXPECT_EQ(live.error().code(), Code::kAlreadyExists);
  again->Reset();
  auto stale = ListenUnix(path);
  ASSERT_TRUE(stale.ok()) << stale.error().ToString();
  stale->Reset();
  ::unlink(path.c_str());
  {
    UniqueFd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(f.valid());
  }
  auto refused = ListenUnix(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), Code::kAlreadyExists);
  ::unlink(path.c_str());
  ::rmdir(path.substr(0, path.rfind('/')).c_str());
}

TEST(Rpc, ConnectUnixErrorsNameThePath) {
  auto r = ConnectUnix("/nonexistent/cask-test.sock");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("/nonexistent/cask-test.sock"), std::string::npos);
  auto longp = ListenUnix("/tmp/" + std::string(200, 'x'));
  ASSERT_FALSE(longp.ok());
  EXPECT_EQ(longp.error().code(), Code::kInvalidArgument);
}

// A pty pair in raw mode is a bidirectional character device, like a
// virtio-serial port: no socket calls work on it.
TEST(Rpc, WorksOverCharacterDevice) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  UniqueFd mfd(master);
  ASSERT_EQ(0, ::grantpt(master));
  ASSERT_EQ(0, ::unlockpt(master));
  UniqueFd sfd(::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(sfd.valid());
  struct termios t;
  ASSERT_EQ(0, ::tcgetattr(sfd.get(), &t));
  ::cfmakeraw(&t);
  ASSERT_EQ(0, ::tcsetattr(sfd.get(), TCSANOW, &t));

  Server server;
  RegisterEcho(server);
  Served served(server, std::move(mfd));
  {
    Client client(std::move(sfd));
    std::string payload;
    for (int i = 0; i < 20000; ++i) payload.push_back(static_cast<char>(i));  // every byte value, > pty buffer
    for (int i = 0; i < 5; ++i) {
      auto r = client.Call(kSvc, "Echo", payload, 10s);
      ASSERT_TRUE(r.ok()) << r.error().ToString();
      EXPECT_EQ(*r, payload);
    }
  }
  server.Shutdown();
  ASSERT_TRUE(served.Finished(kWait));
}

size_t OpenFdCount() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

TEST(Rpc, NoFdLeftBehind) {
  const size_t before = OpenFdCount();
  {
    std::string path = TempSocketPath("leak.sock");
    Server server;
    RegisterEcho(server);
    auto lfd = ListenUnix(path);
    ASSERT_TRUE(lfd.ok());
    auto serving = std::async(std::launch::async, [&, fd = std::move(*lfd)]() mutable { return server.Serve(std::move(fd)); });
    for (int i = 0; i < 5; ++i) {
      auto fd = ConnectUnix(path);
      ASSERT_TRUE(fd.ok());
      Client client(std::move(*fd));
      ASSERT_TRUE(client.Call(kSvc, "Echo", "x").ok());
    }
    auto [a, b] = SocketPair();
    Served served(server, std::move(a));
    {
      Client client(std::move(b));
      ASSERT_TRUE(client.Call(kSvc, "Echo", "y").ok());
    }
    ASSERT_TRUE(served.Finished(kWait));
    server.Shutdown();
    ASSERT_EQ(serving.wait_for(kWait), std::future_status::ready);
    ::unlink(path.c_str());
    ::rmdir(path.substr(0, path.rfind('/')).c_str());
  }
  EXPECT_EQ(OpenFdCount(), before);
}


TEST(LaneTest, ShortCallsNeverQueueBehindLongOnes) {
  Server::Options o;
  o.max_long_calls = 2;
  Server server(o);
  Gate gate;
  std::atomic<int> long_started{0};
  server.Register(
      "s", "Long",
      [&](const CallContext& ctx, const std::string&) -> Result<std::string> {
        ++long_started;
        gate.Wait(&ctx);
        return std::string("long");
      },
      Lane::kLong);
  server.Register("s", "Short", [](const CallContext&, const std::string& p) -> Result<std::string> { return p; });
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  std::vector<std::future<Result<std::string>>> longs;
  for (int i = 0; i < 6; ++i)
    longs.push_back(std::async(std::launch::async, [&] { return client.Call("s", "Long", "", kWait); }));
  while (long_started.load() < 2) std::this_thread::sleep_for(1ms);
  // The long lane is full (2 running, 4 queued); a short call still answers.
  auto start = std::chrono::steady_clock::now();
  auto r = client.Call("s", "Short", "ping", kWait);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, "ping");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(long_started.load(), 2);
  EXPECT_LE(server.thread_count(Lane::kLong), 2u);
  gate.Open();
  for (auto& f : longs) {
    auto lr = f.get();
    ASSERT_TRUE(lr.ok()) << lr.error().ToString();
    EXPECT_EQ(*lr, "long");
  }
  client.Close();
  server.Shutdown();
}

TEST(StreamIdTest, AWrappedIdNeverReusesALiveCall) {
  Server server;
  Gate gate;
  server.Register("s", "Block", [&](const CallContext& ctx, const std::string&) -> Result<std::string> {
    gate.Wait(&ctx);
    return std::string("blocked-call");
  });
  server.Register("s", "Echo", [](const CallContext&, const std::string& p) -> Result<std::string> { return p; });
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  // The blocked call takes id 0xffffffff; then ids wrap to 1.
  client.SetNextStreamIdForTest(0xffffffffu);
  auto blocked = std::async(std::launch::async, [&] { return client.Call("s", "Block", "", kWait); });
  std::this_thread::sleep_for(100ms);
  // Force the next call onto the live id: it must take another one, and
  // each call gets its own answer.
  client.SetNextStreamIdForTest(0xffffffffu);
  auto r = client.Call("s", "Echo", "mine", kWait);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, "mine");
  gate.Open();
  auto br = blocked.get();
  ASSERT_TRUE(br.ok()) << br.error().ToString();
  EXPECT_EQ(*br, "blocked-call");
  client.Close();
  server.Shutdown();
}

TEST(StatusTest, APeerStatusMessageIsCut) {
  Server server;
  server.Register("s", "Fail", [](const CallContext&, const std::string&) -> Result<std::string> {
    return Error::Internal(std::string(1 << 20, 'x'));
  });
  auto [a, b] = SocketPair();
  Served served(server, std::move(a));
  Client client(std::move(b));
  auto r = client.Call("s", "Fail", "", kWait);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInternal);
  EXPECT_LE(r.error().message().size(), 4096u + 32);
  EXPECT_NE(r.error().message().find("[truncated]"), std::string::npos);
  client.Close();
  server.Shutdown();
}

}  // namespace
}  // namespace cask::rpc
