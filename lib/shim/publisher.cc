#include "lib/shim/publisher.h"

#include "lib/rpc/client.h"
#include "lib/rpc/server.h"

namespace cask::shim {

EventPublisher::EventPublisher(Options opts, Logger log) : opts_(std::move(opts)), log_(std::move(log)) {
  thread_ = std::thread([this] { Run(); });
}

EventPublisher::~EventPublisher() { Close(std::chrono::seconds(2)); }

void EventPublisher::Publish(const TaskEvent& event) {
  Item item{Encode(event), std::chrono::system_clock::now()};
  if (opts_.ttrpc_address.empty()) {
    log_.Debug("event (no sink)", {{"topic", item.event.topic}, {"type", item.event.type_url}});
    return;
  }
  std::lock_guard lk(mu_);
  if (stopping_) {
    log_.Warn("event published after close, dropped", {{"topic", item.event.topic}});
    ++dropped_;
    return;
  }
  const size_t bytes = item.event.value.size() + item.event.topic.size() + item.event.type_url.size();
  if (bytes > opts_.max_queue_bytes) {
    CountDropLocked(item.event.topic, "event larger than the queue's byte bound, dropped");
    return;
  }
  while (!queue_.empty() && queue_.size() > (busy_ ? 1u : 0u) &&
         (queue_.size() >= opts_.max_queue || queued_bytes_ + bytes > opts_.max_queue_bytes))
    DropOldestLocked();
  queued_bytes_ += bytes;
  queue_.push_back(std::move(item));
  cv_.notify_all();
}

namespace {
size_t ItemBytes(const EncodedEvent& e) { return e.value.size() + e.topic.size() + e.type_url.size(); }
}  // namespace

void EventPublisher::DropOldestLocked() {
  // The sender delivers the front without holding mu_: leave it in place.
  auto it = busy_ ? std::next(queue_.begin()) : queue_.begin();
  CountDropLocked(it->event.topic, "event queue full, dropping the oldest waiting event");
  queued_bytes_ -= ItemBytes(it->event);
  queue_.erase(it);
}

void EventPublisher::CountDropLocked(const std::string& topic, const char* why) {
  ++dropped_;
  if (dropped_ == 1 || dropped_ % 100 == 0)
    log_.Error(why, {{"topic", topic}, {"dropped_so_far", std::to_string(dropped_)}});
}

bool EventPublisher::Flush(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return queue_.empty() && !busy_; });
}

void EventPublisher::Close(std::chrono::milliseconds drain) {
  Flush(drain);
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard lk(mu_);
  if (!queue_.empty()) {
    log_.Warn("events not delivered at shutdown", {{"count", std::to_string(queue_.size())}});
    dropped_ += queue_.size();
    queue_.clear();
  }
}

uint64_t EventPublisher::delivered() const {
  std::lock_guard lk(mu_);
  return delivered_;
}
uint64_t EventPublisher::dropped() const {
  std::lock_guard lk(mu_);
  return dropped_;
}

void EventPublisher::Run() {
  for (;;) {
    Item item;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      item = queue_.front();  // stays queued until delivered: a restart resends it
      busy_ = true;
    }
    bool ok = Deliver(item);
    std::lock_guard lk(mu_);
    if (!queue_.empty()) {
      queued_bytes_ -= ItemBytes(queue_.front().event);
      queue_.pop_front();
    }
    busy_ = false;
    if (ok) ++delivered_;
    else ++dropped_;
    cv_.notify_all();
  }
  client_.reset();
}

bool EventPublisher::Deliver(const Item& item) {
  const std::string payload = EncodeForwardRequest(item.event, opts_.ns, item.when);
  const rpc::Client::Metadata md = {{std::string(kNamespaceMetadataKey), opts_.ns}};
  std::string last_error;
  for (int attempt = 0; attempt < opts_.max_attempts; ++attempt) {
    if (attempt > 0) {
      std::unique_lock lk(mu_);
      // A stop request cuts the back-off short; the event is then dropped.
      if (cv_.wait_for(lk, opts_.retry_delay, [&] { return stopping_; })) break;
    }
    if (!client_ || client_->closed()) {
      client_.reset();
      auto fd = rpc::ConnectUnix(opts_.ttrpc_address);
      if (!fd.ok()) {
        last_error = fd.error().ToString();
        continue;
      }
      client_ = std::make_unique<rpc::Client>(std::move(fd).value());
    }
    auto r = client_->Call(kEventsService, "Forward", payload, opts_.call_timeout, md);
    if (r.ok()) return true;
    last_error = r.error().ToString();
    switch (r.error().code()) {
      case Code::kUnavailable:
      case Code::kDeadlineExceeded:
      case Code::kCancelled:
        // The connection is broken or containerd is stuck: start over on a
        // fresh connection.
        client_.reset();
        if (attempt == 0) log_.Warn("event forward failed, retrying", {{"topic", item.event.topic}, {"error", last_error}});
        continue;
      default:
        log_.Error("containerd rejected event", {{"topic", item.event.topic}, {"error", last_error}});
        return false;
    }
  }
  log_.Error("dropping event after retries", {{"topic", item.event.topic}, {"error", last_error}});
  return false;
}

}  // namespace cask::shim
