#include "lib/rpc/client.h"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "lib/rpc/fd_stream.h"
#include "lib/rpc/frame.h"
#include "lib/rpc/wire.h"

namespace cask::rpc {

using internal::FdStream;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kReadChunk = 64 * 1024;

Error Closed() { return Error::Unavailable("ttrpc connection closed"); }

}  // namespace

struct Client::Impl {
  // One call waiting for its response.
  struct Pending {
    std::condition_variable cv;
    std::optional<Result<std::string>> result;  // set once, under mu
  };

  void ReadLoop();
  // Fails every pending call, marks the client closed. Returns true the first
  // time. Called with mu held.
  bool MarkClosedLocked();
  void Complete(uint32_t stream_id, Result<std::string> result);

  std::unique_ptr<FdStream> stream;  // null if the fd was unusable
  std::thread reader;

  std::mutex mu;
  bool closed = false;
  uint32_t next_id = 1;
  std::map<uint32_t, std::shared_ptr<Pending>> pending;
  std::function<void()> on_close;
  bool on_close_ran = false;

 public:
  // Test seam: the next stream id to hand out.
  void SetNextIdForTest(uint32_t id) {
    std::lock_guard<std::mutex> lock(mu);
    next_id = id | 1u;
  }
};

Client::Client(UniqueFd fd) : impl_(std::make_unique<Impl>()) {
  auto stream = FdStream::Make(std::move(fd));
  if (!stream.ok()) {
    // Nothing to read: the client starts closed, every call is UNAVAILABLE.
    impl_->closed = true;
    impl_->on_close_ran = true;
    return;
  }
  impl_->stream = std::move(stream).value();
  impl_->reader = std::thread([impl = impl_.get()] { impl->ReadLoop(); });
}

Client::~Client() {
  Close();
  if (impl_->reader.joinable()) impl_->reader.join();
}

void Client::Close() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->MarkClosedLocked();
  // The reader notices, closes the fd and runs OnClose.
  if (impl_->stream) impl_->stream->Wake();
}

void Client::SetNextStreamIdForTest(uint32_t id) { impl_->SetNextIdForTest(id); }

bool Client::closed() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->closed;
}

void Client::OnClose(std::function<void()> fn) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  if (impl_->on_close_ran) {
    // The stream is already closed: run it now, on the caller's thread.
    lock.unlock();
    if (fn) fn();
    return;
  }
  impl_->on_close = std::move(fn);
}

bool Client::Impl::MarkClosedLocked() {
  if (closed && pending.empty()) return false;
  bool first = !closed;
  closed = true;
  for (auto& [id, p] : pending) {
    p->result = Closed();
    p->cv.notify_all();
  }
  pending.clear();
  return first;
}

void Client::Impl::Complete(uint32_t stream_id, Result<std::string> result) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = pending.find(stream_id);
  if (it == pending.end()) return;  // timed out locally, or never ours
  it->second->result = std::move(result);
  it->second->cv.notify_all();
  pending.erase(it);
}

void Client::Impl::ReadLoop() {
  FrameDecoder decoder;
  std::string buf(kReadChunk, '\0');
  for (;;) {
    auto n = stream->Read(buf.data(), buf.size(), std::nullopt);
    if (!n.ok() || *n == 0) break;  // closed locally, by the peer, or broken
    decoder.Feed(std::string_view(buf.data(), *n));
    while (auto frame = decoder.Next()) {
      if (frame->header.type != static_cast<uint8_t>(MessageType::kResponse)) continue;
      const uint32_t sid = frame->header.stream_id;
      if (frame->oversized) {
        Complete(sid, Error::ResourceExhausted("response: " + internal::OversizeMessage(frame->header.length)));
        continue;
      }
      ttrpc::Response resp;
      if (!resp.ParseFromString(frame->payload)) {
        Complete(sid, Error::Internal("ttrpc: cannot parse the response on stream " + std::to_string(sid)));
        continue;
      }
      if (resp.has_status() && resp.status().code() != 0) {
        Complete(sid, internal::StatusToError(resp.status()));
      } else {
        Complete(sid, std::move(*resp.mutable_payload()));
      }
    }
  }
  stream->Close();
  std::function<void()> fn;
  {
    std::lock_guard<std::mutex> lock(mu);
    MarkClosedLocked();
    on_close_ran = true;
    fn = std::move(on_close);
  }
  if (fn) fn();
}

Result<std::string> Client::Call(std::string_view service, std::string_view method, std::string payload,
                                 std::optional<std::chrono::nanoseconds> timeout, const Metadata& metadata) {
  const std::string what = std::string(service) + "." + std::string(method);
  std::optional<Clock::time_point> deadline;
  ttrpc::Request req;
  if (timeout) {
    if (timeout->count() <= 0) return Error::DeadlineExceeded(what + ": timeout is not positive");
    deadline = Clock::now() + *timeout;
    req.set_timeout_nano(timeout->count());
  }
  req.set_service(std::string(service));
  req.set_method(std::string(method));
  req.set_payload(std::move(payload));
  for (const auto& [k, v] : metadata) {
    auto* kv = req.add_metadata();
    std::string key = k;
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    kv->set_key(std::move(key));
    kv->set_value(v);
  }

  auto p = std::make_shared<Impl::Pending>();
  uint32_t sid;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->closed) return Closed().Wrap(what);
    // Odd ids, wrapping from 0xffffffff back to 1. An id still held by a
    // live call is skipped, so a late response can never complete the wrong
    // call; pending holds far fewer than 2^31 calls, so a free id exists.
    do {
      sid = impl_->next_id;
      impl_->next_id += 2;
    } while (impl_->pending.count(sid) != 0);
    impl_->pending[sid] = p;
  }
  auto forget = [&] {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->pending.erase(sid);
  };

  FrameHeader h;
  h.stream_id = sid;
  h.type = static_cast<uint8_t>(MessageType::kRequest);
  auto frame = EncodeFrame(h, req.SerializeAsString());
  if (!frame.ok()) {
    forget();
    return std::move(frame).error().Wrap(what + ": request");
  }
  Status sent = impl_->stream->WriteAll(*frame, deadline);
  if (!sent.ok()) {
    forget();
    Error e = std::move(sent).error();
    if (e.code() == Code::kDeadlineExceeded) return Error::DeadlineExceeded(what + ": timed out sending the request");
    // The stream is broken (possibly mid-frame): nothing more can be sent.
    Close();
    if (e.code() == Code::kCancelled) return Closed().Wrap(what);
    return Error::Unavailable(e.ToString()).Wrap(what);
  }

  std::unique_lock<std::mutex> lock(impl_->mu);
  if (deadline) {
    if (!p->cv.wait_until(lock, *deadline, [&] { return p->result.has_value(); })) {
      impl_->pending.erase(sid);
      return Error::DeadlineExceeded(what + ": timed out waiting for the response");
    }
  } else {
    p->cv.wait(lock, [&] { return p->result.has_value(); });
  }
  Result<std::string> r = std::move(*p->result);
  if (!r.ok()) return std::move(r).error().Wrap(what);
  return r;
}

}  // namespace cask::rpc
