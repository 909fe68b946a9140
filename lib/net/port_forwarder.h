// PortForwarder: makes 127.0.0.1:<port> inside a pod's network namespace
// on the host reach the same port in the pod VM.
//
// containerd serves `kubectl port-forward` (CRI PortForward) by entering
// the pod's network namespace on the host and dialing localhost:<port>;
// it never asks the runtime. With the pod's address in a VM, nothing
// listens there. The forwarder listens on 127.0.0.1:<port> in that
// namespace for each port the guest listens on (the caller keeps the set
// current with SetPorts, from the agent's list of listening sockets) and
// relays each connection to <target>:<port>, the guest's end of the host
// link (pod_network.h), which is only reachable from that namespace.
//
// No iptables or nftables rule is involved. Bounded: at most max_ports
// listeners, max_connections relayed connections (further clients wait
// in the listen backlog), buffer_bytes per direction per connection.
//
// Threads: one relay thread, which joins the pod's namespace when it
// starts (so every socket it makes belongs there) and runs a poll loop.
// SetPorts and Stop may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <future>
#include <thread>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/thread_annotations.h"
#include "lib/base/unique_fd.h"

namespace cask::net {

class PortForwarder {
 public:
  struct Options {
    int netns_fd = -1;          // the pod's network namespace (duplicated; the caller keeps its own)
    std::string listen_ip = "127.0.0.1";
    std::string target_ip;      // IPv4 the connections go to (the guest's host-link address)
    size_t max_ports = 64;
    size_t max_connections = 128;
    size_t buffer_bytes = 64 * 1024;
  };

  // Starts the relay thread in the namespace. A failing setns or a bad
  // address is the error.
  static Result<std::unique_ptr<PortForwarder>> Start(const Options& opts);
  ~PortForwarder();  // Stop()
  PortForwarder(const PortForwarder&) = delete;
  PortForwarder& operator=(const PortForwarder&) = delete;

  // Listens on exactly `ports` (1..65535; more than max_ports is
  // RESOURCE_EXHAUSTED and changes nothing); returns once applied. A port
  // that cannot be bound (in use in the namespace) is left out and
  // retried on the next call. Connections already relayed stay.
  Status SetPorts(const std::set<uint16_t>& ports);
  // The ports listened on now.
  std::set<uint16_t> listening() const;
  size_t connections() const;

  // Closes every listener and connection and joins the thread. Idempotent.
  void Stop();

 private:
  explicit PortForwarder(const Options& opts) : opts_(opts) {}
  void Run(std::promise<Status>* started);
  void Wake();

  const Options opts_;
  UniqueFd netns_;
  UniqueFd wake_;  // eventfd
  std::thread thread_;

  mutable Mutex mu_;
  std::condition_variable applied_cv_;
  std::set<uint16_t> wanted_ GUARDED_BY(mu_);
  uint64_t wanted_gen_ GUARDED_BY(mu_) = 0;
  uint64_t applied_gen_ GUARDED_BY(mu_) = 0;
  std::set<uint16_t> listening_ GUARDED_BY(mu_);
  size_t connections_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  bool stopped_ = false;  // Stop() ran (the caller's side)
};

}  // namespace cask::net
