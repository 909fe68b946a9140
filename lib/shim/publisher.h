// EventPublisher: forwards task events to containerd over ttrpc, in order.
//
// containerd (1.3+) passes its ttrpc socket path in $TTRPC_ADDRESS; each
// event is one unary call containerd.services.events.ttrpc.v1.Events/Forward
// (containerd's ttrpc events service). Events go through ONE queue drained by one
// thread, so containerd sees them in Publish() order. When the connection
// breaks (containerd restarted), the publisher reconnects and resends the
// event at the head of the queue; an event is dropped (and logged) only
// after Options::max_attempts failures or when containerd rejects it
// (INVALID_ARGUMENT and the like). With an empty address (CRI-O) events are
// only logged.
//
// Thread safety: Publish/Flush/Close may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "lib/base/log.h"
#include "lib/shim/events.h"

namespace cask::rpc {
class Client;
}

namespace cask::shim {

inline constexpr std::string_view kEventsService = "containerd.services.events.ttrpc.v1.Events";
inline constexpr std::string_view kNamespaceMetadataKey = "containerd-namespace-ttrpc";

class EventPublisher {
 public:
  struct Options {
    std::string ttrpc_address;  // unix socket path; empty = no sink
    std::string ns;             // Envelope.namespace
    std::chrono::milliseconds call_timeout{5000};
    std::chrono::milliseconds retry_delay{250};
    int max_attempts = 120;     // ~30 s of retries per event: a containerd restart fits
    size_t max_queue = 2048;    // beyond this the oldest event is dropped
  };

  EventPublisher(Options opts, Logger log);
  ~EventPublisher();  // Close(std::chrono::seconds(2))
  EventPublisher(const EventPublisher&) = delete;
  EventPublisher& operator=(const EventPublisher&) = delete;

  // Queues `event` stamped with the current time. Never blocks on I/O.
  void Publish(const TaskEvent& event);

  // Waits until every queued event was delivered or dropped, at most
  // `timeout`. Returns true when the queue is empty.
  bool Flush(std::chrono::milliseconds timeout);

  // Flushes for at most `drain` then stops the sender. Idempotent.
  void Close(std::chrono::milliseconds drain);

  // Counters, for tests and logs.
  uint64_t delivered() const;
  uint64_t dropped() const;

 private:
  struct Item {
    EncodedEvent event;
    Timestamp when;
  };
  void Run();
  // Sends one item, reconnecting as needed; false if it must be dropped.
  bool Deliver(const Item& item);

  const Options opts_;
  const Logger log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  bool busy_ = false;  // the sender holds an item it has not finished
  uint64_t delivered_ = 0;
  uint64_t dropped_ = 0;
  std::unique_ptr<rpc::Client> client_;  // sender thread only
  std::thread thread_;
};

}  // namespace cask::shim
