#include "lib/rpc/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <exception>
#include <list>
#include <set>
#include <thread>

#include "lib/rpc/fd_stream.h"
#include "lib/rpc/frame.h"
#include "lib/rpc/handler_pool.h"
#include "lib/rpc/wire.h"

namespace cask::rpc {

using internal::FdStream;
using Clock = std::chrono::steady_clock;

namespace {

// Bytes read from the stream at a time.
constexpr size_t kReadChunk = 64 * 1024;
// A peer's timeout_nano is capped here so the deadline arithmetic cannot
// overflow; a longer timeout is as good as none.
constexpr auto kMaxTimeout = std::chrono::hours(24 * 365);
// Deadline bookkeeping of one connection is swept of finished calls once it
// holds this many entries.
constexpr size_t kDeadlineSweepSize = 1024;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string StatusFrame(uint32_t stream_id, Error error) { return internal::EncodeResponseFrame(stream_id, error); }

}  // namespace

// One served connection.
struct Conn {
  std::shared_ptr<FdStream> stream;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);

  // Sends one frame. A failed write (other than after Wake) leaves the
  // stream unusable, possibly mid-frame, so the connection is ended.
  void Send(const std::string& frame) { Send(frame, {}); }
  void Send(std::string_view head, std::string_view payload) {
    auto st = stream->WriteAll(head, payload);
    if (!st.ok() && st.error().code() != Code::kCancelled) stream->Wake();
  }
};

// One call in flight.
// A registered method.
struct Method {
  MethodHandler handler;
  Lane lane = Lane::kShort;
};

struct Call {
  std::shared_ptr<Conn> conn;
  std::shared_ptr<const Method> handler;
  CallContext ctx;
  std::string payload;
  // Whoever flips this first (handler completion or deadline) replies.
  std::atomic<bool> replied{false};

  void Reply(Result<std::string> result) {
    if (replied.exchange(true)) return;
    internal::ResponseFrame f = internal::EncodeResponseFrameParts(ctx.stream_id, std::move(result));
    conn->Send(f.head, f.payload);
  }

  Error Expired() const {
    return Error::DeadlineExceeded(ctx.service + "." + ctx.method + ": deadline exceeded (timeout_nano)");
  }

  void Run() {
    if (replied.load()) return;  // the deadline passed while queued
    if (ctx.Expired()) return Reply(Expired());
    Result<std::string> result = Error::Internal("no result");
    try {
      result = handler->handler(ctx, payload);
    } catch (const std::exception& e) {
      result = Error::Internal(ctx.service + "." + ctx.method + ": handler threw: " + e.what());
    } catch (...) {
      result = Error::Internal(ctx.service + "." + ctx.method + ": handler threw");
    }
    // Past the deadline the caller has given up: whatever the handler says,
    // the answer is DEADLINE_EXCEEDED (as if the reader's timer fired first).
    if (ctx.Expired()) return Reply(Expired());
    Reply(std::move(result));
  }
};

struct Server::Impl {
  explicit Impl(Options o)
      : opts(std::move(o)),
        short_pool(opts.max_concurrent_calls),
        long_pool(opts.max_long_calls),
        serve_wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

  Status ReadLoop(const std::shared_ptr<Conn>& conn) EXCLUDES(mu);
  void HandleFrame(const std::shared_ptr<Conn>& conn, Frame frame,
                   std::multimap<Clock::time_point, std::weak_ptr<Call>>& deadlines) EXCLUDES(mu);
  void ReapConnThreads() EXCLUDES(mu);
  internal::HandlerPool& PoolFor(Lane lane) { return lane == Lane::kLong ? long_pool : short_pool; }

  const Options opts;
  // Thread-safe themselves; not guarded by mu.
  internal::HandlerPool short_pool;
  internal::HandlerPool long_pool;
  const UniqueFd serve_wake;  // readable after Shutdown(); wakes accept loops

  // One lock for the registry and the connection bookkeeping. Leaf lock:
  // nothing else is taken while it is held (a connection's stream has its
  // own write lock, taken only in Conn::Send, never under mu).
  mutable Mutex mu;
  std::condition_variable_any cv;  // signalled when `active` drops
  std::map<std::string, std::map<std::string, std::shared_ptr<const Method>>> services GUARDED_BY(mu);
  std::set<std::shared_ptr<Conn>> conns GUARDED_BY(mu);
  bool shutdown GUARDED_BY(mu) = false;
  size_t active GUARDED_BY(mu) = 0;  // Serve + ServeConnection calls in progress

  struct ConnThread {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::list<std::unique_ptr<ConnThread>> conn_threads GUARDED_BY(mu);
};

Server::Server() : Server(Options{}) {}

Server::Server(Options opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}

Server::~Server() {
  Shutdown();
  std::list<std::unique_ptr<Impl::ConnThread>> threads;
  {
    MutexLock lock(impl_->mu);
    impl_->cv.wait(impl_->mu, [this] {
      impl_->mu.AssertHeld();
      return impl_->active == 0;
    });
    threads.swap(impl_->conn_threads);
  }
  for (auto& t : threads) t->thread.join();
  impl_->short_pool.Stop();
  impl_->long_pool.Stop();
}

void Server::Register(std::string service, std::string method, MethodHandler handler, Lane lane) {
  MutexLock lock(impl_->mu);
  impl_->services[std::move(service)][std::move(method)] =
      std::make_shared<const Method>(Method{std::move(handler), lane});
}

size_t Server::thread_count(Lane lane) const { return impl_->PoolFor(lane).thread_count(); }

void Server::Shutdown() {
  MutexLock lock(impl_->mu);
  if (impl_->shutdown) return;
  impl_->shutdown = true;
  for (auto& c : impl_->conns) {
    c->cancelled->store(true);
    c->stream->Wake();
  }
  if (impl_->serve_wake.valid()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl_->serve_wake.get(), &one, sizeof one);
  }
}

size_t Server::connection_count() const {
  MutexLock lock(impl_->mu);
  return impl_->conns.size();
}

Status Server::ServeConnection(UniqueFd fd) {
  CASK_ASSIGN_OR_RETURN(std::unique_ptr<FdStream> stream, FdStream::Make(std::move(fd)));
  auto conn = std::make_shared<Conn>();
  conn->stream = std::move(stream);
  {
    MutexLock lock(impl_->mu);
    if (impl_->shutdown) return Ok();
    impl_->conns.insert(conn);
    ++impl_->active;
  }
  Status st = impl_->ReadLoop(conn);
  conn->cancelled->store(true);
  conn->stream->Close();
  {
    MutexLock lock(impl_->mu);
    impl_->conns.erase(conn);
    --impl_->active;
    impl_->cv.notify_all();
  }
  return st;
}

Status Server::Impl::ReadLoop(const std::shared_ptr<Conn>& conn) {
  FrameDecoder decoder;
  std::string buf(kReadChunk, '\0');
  // Calls with a deadline, soonest first. Only this thread touches it.
  std::multimap<Clock::time_point, std::weak_ptr<Call>> deadlines;
  for (;;) {
    // Answer the calls whose deadline passed.
    auto now = Clock::now();
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      if (auto call = deadlines.begin()->second.lock()) call->Reply(call->Expired());
      deadlines.erase(deadlines.begin());
    }
    if (deadlines.size() >= kDeadlineSweepSize) {
      std::erase_if(deadlines, [](const auto& e) {
        auto call = e.second.lock();
        return !call || call->replied.load();
      });
    }
    std::optional<Clock::time_point> wake_at;
    if (!deadlines.empty()) wake_at = deadlines.begin()->first;

    auto n = conn->stream->Read(buf.data(), buf.size(), wake_at);
    if (!n.ok()) {
      Code code = n.error().code();
      if (code == Code::kDeadlineExceeded) continue;
      if (code == Code::kCancelled) return Ok();
      return std::move(n).error().Wrap("ttrpc server: reading connection");
    }
    if (*n == 0) return Ok();  // the peer closed the stream
    decoder.Feed(std::string_view(buf.data(), *n));
    while (auto frame = decoder.Next()) HandleFrame(conn, std::move(*frame), deadlines);
  }
}

void Server::Impl::HandleFrame(const std::shared_ptr<Conn>& conn, Frame frame,
                               std::multimap<Clock::time_point, std::weak_ptr<Call>>& deadlines) {
  const uint32_t sid = frame.header.stream_id;
  if (frame.oversized) {
    conn->Send(StatusFrame(sid, Error::ResourceExhausted(internal::OversizeMessage(frame.header.length))));
    return;
  }
  if (frame.header.type != static_cast<uint8_t>(MessageType::kRequest)) return;  // future types
  if (sid % 2 != 1) {
    conn->Send(StatusFrame(sid, Error::InvalidArgument("StreamID must be odd for client initiated streams")));
    return;
  }
  ttrpc::Request req;
  if (!req.ParseFromString(frame.payload)) {
    conn->Send(StatusFrame(sid, Error::InvalidArgument("unmarshal request error: not a ttrpc.Request")));
    return;
  }

  auto call = std::make_shared<Call>();
  {
    MutexLock lock(mu);
    auto svc = services.find(req.service());
    if (svc == services.end()) {
      conn->Send(StatusFrame(sid, Error::Unimplemented("service " + req.service())));
      return;
    }
    auto m = svc->second.find(req.method());
    if (m == svc->second.end()) {
      conn->Send(StatusFrame(sid, Error::Unimplemented("method " + req.method())));
      return;
    }
    call->handler = m->second;
  }
  call->conn = conn;
  call->ctx.stream_id = sid;
  call->ctx.service = std::move(*req.mutable_service());
  call->ctx.method = std::move(*req.mutable_method());
  call->ctx.cancelled = conn->cancelled;
  for (auto& kv : *req.mutable_metadata())
    call->ctx.metadata.emplace_back(Lower(std::move(*kv.mutable_key())), std::move(*kv.mutable_value()));
  call->payload = std::move(*req.mutable_payload());
  if (req.timeout_nano() != 0) {
    auto timeout = std::chrono::nanoseconds(std::max<int64_t>(req.timeout_nano(), 0));
    call->ctx.deadline = Clock::now() + std::min<std::chrono::nanoseconds>(timeout, kMaxTimeout);
    deadlines.emplace(*call->ctx.deadline, call);
  }
  if (!PoolFor(call->handler->lane).Submit([call] { call->Run(); })) {
    call->Reply(Error::Unavailable("ttrpc server is shutting down"));
  }
}

Status Server::Serve(UniqueFd listen_fd) {
  if (!impl_->serve_wake.valid()) return Error::Internal("ttrpc server: no wake-up eventfd (eventfd failed)");
  int flags = ::fcntl(listen_fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(listen_fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return Error::Sys(errno, "ttrpc server: making the listening socket non-blocking");
  {
    MutexLock lock(impl_->mu);
    if (impl_->shutdown) return Ok();
    ++impl_->active;
  }
  Status result;
  for (;;) {
    impl_->ReapConnThreads();
    struct pollfd p[2] = {{listen_fd.get(), POLLIN, 0}, {impl_->serve_wake.get(), POLLIN, 0}};
    int n = ::poll(p, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = Error::Sys(errno, "ttrpc server: poll on listening socket");
      break;
    }
    if (p[1].revents) break;  // Shutdown()
    int fd = ::accept4(listen_fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EAGAIN || e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        // Out of resources: back off rather than spin; Shutdown still wakes us.
        struct pollfd w = {impl_->serve_wake.get(), POLLIN, 0};
        ::poll(&w, 1, 100);
        continue;
      }
      result = Error::Sys(e, "ttrpc server: accept");
      break;
    }
    UniqueFd conn_fd(fd);
    MutexLock lock(impl_->mu);
    if (impl_->shutdown) break;
    auto t = std::make_unique<Impl::ConnThread>();
    auto* raw = t.get();
    t->thread = std::thread([this, raw, cfd = std::move(conn_fd)]() mutable {
      Status st = ServeConnection(std::move(cfd));
      if (!st.ok() && impl_->opts.on_connection_error) impl_->opts.on_connection_error(st.error());
      raw->done.store(true);
    });
    impl_->conn_threads.push_back(std::move(t));
  }
  MutexLock lock(impl_->mu);
  --impl_->active;
  impl_->cv.notify_all();
  return result;
}

void Server::Impl::ReapConnThreads() {
  std::list<std::unique_ptr<ConnThread>> done;
  {
    MutexLock lock(mu);
    for (auto it = conn_threads.begin(); it != conn_threads.end();) {
      if ((*it)->done.load()) {
        done.push_back(std::move(*it));
        it = conn_threads.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& t : done) t->thread.join();
}

}  // namespace cask::rpc
