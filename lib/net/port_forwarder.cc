#include "lib/net/port_forwarder.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>

namespace cask::net {
namespace {

struct Relay {
  UniqueFd client, guest;
  bool connecting = true;
  std::vector<uint8_t> to_guest, to_client;  // pending bytes, bounded by buffer_bytes
  bool client_eof = false, guest_eof = false;
  bool guest_wr_shut = false, client_wr_shut = false;
  bool dead = false;
};

// Reads what fits into `buf` (up to `cap`). False on EOF or error.
enum class Io { kOk, kEof, kError };
Io ReadInto(int fd, std::vector<uint8_t>* buf, size_t cap) {
  size_t room = cap - buf->size();
  if (room == 0) return Io::kOk;
  size_t old = buf->size();
  buf->resize(old + room);
  ssize_t n = ::recv(fd, buf->data() + old, room, MSG_DONTWAIT);
  if (n > 0) {
    buf->resize(old + static_cast<size_t>(n));
    return Io::kOk;
  }
  buf->resize(old);
  if (n == 0) return Io::kEof;
  return errno == EAGAIN || errno == EINTR ? Io::kOk : Io::kError;
}

bool WriteFrom(int fd, std::vector<uint8_t>* buf) {
  if (buf->empty()) return true;
  ssize_t n = ::send(fd, buf->data(), buf->size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  buf->erase(buf->begin(), buf->begin() + n);
  return true;
}

Result<UniqueFd> Listen(const in_addr& ip, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Error::Sys(errno, "socket");
  UniqueFd owned(fd);
  int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = ip;
  sa.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return Error::Sys(errno, "bind port " + std::to_string(port));
  if (::listen(fd, 64) != 0) return Error::Sys(errno, "listen on port " + std::to_string(port));
  return owned;
}

// Opens a listener for each port of `wanted` not listened on yet and closes
// those no longer wanted; `port_of` maps each listener fd to its port. A
// port that cannot be bound (in use in the namespace) is left out, to be
// tried again on the next change.
void SyncListeners(const std::set<uint16_t>& wanted, const in_addr& ip, std::map<uint16_t, UniqueFd>& listeners,
                   std::map<int, uint16_t>& port_of) {
  for (auto it = listeners.begin(); it != listeners.end();) {
    if (!wanted.count(it->first)) {
      port_of.erase(it->second.get());
      it = listeners.erase(it);
    } else {
      ++it;
    }
  }
  for (uint16_t p : wanted) {
    if (listeners.count(p)) continue;
    auto fd = Listen(ip, p);
    if (!fd.ok()) continue;
    port_of[fd->get()] = p;
    listeners[p] = std::move(*fd);
  }
}

// The poll events of a relay's two sockets: read while the buffer toward
// the other side has room (below `cap`), write while bytes wait; a guest
// socket still connecting waits to become writable.
void RelayInterest(const Relay& r, size_t cap, short* client, short* guest) {
  *client = *guest = 0;
  if (!r.client_eof && r.to_guest.size() < cap) *client |= POLLIN;
  if (!r.to_client.empty()) *client |= POLLOUT;
  if (r.connecting) {
    *guest = POLLOUT;
  } else {
    if (!r.guest_eof && r.to_client.size() < cap) *guest |= POLLIN;
    if (!r.to_guest.empty()) *guest |= POLLOUT;
  }
}

// One step of a relay after poll (`client` and `guest` are the revents of
// its sockets): completes the connect to the guest, moves bytes both ways,
// and passes each half-close on once the bytes before it have. Marks the
// relay dead on an error, a refused connect, or when both directions are
// shut.
void PumpRelay(Relay& r, short client, short guest, size_t cap) {
  if (r.connecting) {
    if (guest & (POLLOUT | POLLERR | POLLHUP)) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(r.guest.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        r.dead = true;
        return;
      }
      r.connecting = false;
    }
  } else {
    if (guest & (POLLIN | POLLHUP | POLLERR)) {
      Io io = ReadInto(r.guest.get(), &r.to_client, cap);
      if (io == Io::kEof) r.guest_eof = true;
      if (io == Io::kError) r.dead = true;
    }
    if (!r.dead && !WriteFrom(r.guest.get(), &r.to_guest)) r.dead = true;
  }
  if (client & (POLLIN | POLLHUP | POLLERR)) {
    Io io = ReadInto(r.client.get(), &r.to_guest, cap);
    if (io == Io::kEof) r.client_eof = true;
    if (io == Io::kError) r.dead = true;
  }
  if (!r.dead && !WriteFrom(r.client.get(), &r.to_client)) r.dead = true;
  if (r.dead || r.connecting) return;
  if (!r.to_guest.empty()) (void)WriteFrom(r.guest.get(), &r.to_guest);
  if (r.client_eof && r.to_guest.empty() && !r.guest_wr_shut) {
    ::shutdown(r.guest.get(), SHUT_WR);
    r.guest_wr_shut = true;
  }
  if (r.guest_eof && r.to_client.empty() && !r.client_wr_shut) {
    ::shutdown(r.client.get(), SHUT_WR);
    r.client_wr_shut = true;
  }
  if (r.client_wr_shut && r.guest_wr_shut) r.dead = true;
}

// Accepts the clients waiting on `listener` while there are fewer than
// `max` relays, each with a non-blocking connect to `target`:`port`. A
// connect refused at once drops that client (its socket closes).
void AcceptClients(int listener, const in_addr& target, uint16_t port, size_t max,
                   std::vector<std::unique_ptr<Relay>>& relays) {
  while (relays.size() < max) {
    int cfd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0) break;
    auto r = std::make_unique<Relay>();
    r->client.Reset(cfd);
    int gfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (gfd < 0) break;
    r->guest.Reset(gfd);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr = target;
    sa.sin_port = htons(port);
    if (::connect(gfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) continue;
    relays.push_back(std::move(r));
  }
}

}  // namespace

Result<std::unique_ptr<PortForwarder>> PortForwarder::Start(const Options& opts) {
  in_addr a;
  if (::inet_pton(AF_INET, opts.target_ip.c_str(), &a) != 1)
    return Error::InvalidArgument("port forwarder target \"" + opts.target_ip + "\" is not an IPv4 address");
  if (::inet_pton(AF_INET, opts.listen_ip.c_str(), &a) != 1)
    return Error::InvalidArgument("port forwarder listen address \"" + opts.listen_ip + "\" is not an IPv4 address");
  if (opts.buffer_bytes == 0 || opts.max_connections == 0)
    return Error::InvalidArgument("port forwarder bounds must not be 0");
  std::unique_ptr<PortForwarder> pf(new PortForwarder(opts));
  int ns = ::fcntl(opts.netns_fd, F_DUPFD_CLOEXEC, 0);
  if (ns < 0) return Error::Sys(errno, "duplicate the network namespace fd");
  pf->netns_.Reset(ns);
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd");
  pf->wake_.Reset(efd);
  std::promise<Status> started;
  auto fut = started.get_future();
  PortForwarder* self = pf.get();
  pf->thread_ = std::thread([self, &started] { self->Run(&started); });
  Status st = fut.get();
  if (!st.ok()) {
    pf->thread_.join();
    pf->stopped_ = true;
    return std::move(st).error().Wrap("start the port forwarder");
  }
  return pf;
}

PortForwarder::~PortForwarder() { Stop(); }

void PortForwarder::Wake() {
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

Status PortForwarder::SetPorts(const std::set<uint16_t>& ports) NO_THREAD_SAFETY_ANALYSIS {
  if (ports.size() > opts_.max_ports)
    return Error::ResourceExhausted(std::to_string(ports.size()) + " ports to forward; at most " +
                                    std::to_string(opts_.max_ports));
  if (ports.count(0)) return Error::InvalidArgument("port 0 cannot be forwarded");
  std::unique_lock<std::mutex> l(mu_.native());
  if (stop_) return Error::FailedPrecondition("the port forwarder is stopped");
  wanted_ = ports;
  uint64_t gen = ++wanted_gen_;
  Wake();
  // A loop, not a predicate lambda: the analysis cannot see that a lambda
  // runs under the lock this function holds.
  while (applied_gen_ < gen && !stop_) applied_cv_.wait(l);
  return Ok();
}

std::set<uint16_t> PortForwarder::listening() const {
  MutexLock l(mu_);
  return listening_;
}

size_t PortForwarder::connections() const {
  MutexLock l(mu_);
  return connections_;
}

void PortForwarder::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    MutexLock l(mu_);
    stop_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  applied_cv_.notify_all();
}

void PortForwarder::Run(std::promise<Status>* started) NO_THREAD_SAFETY_ANALYSIS {
  if (::setns(netns_.get(), CLONE_NEWNET) != 0) {
    started->set_value(Error::Sys(errno, "join the pod's network namespace"));
    return;
  }
  started->set_value(Ok());
  in_addr listen_ip, target_ip;
  ::inet_pton(AF_INET, opts_.listen_ip.c_str(), &listen_ip);
  ::inet_pton(AF_INET, opts_.target_ip.c_str(), &target_ip);
  std::map<uint16_t, UniqueFd> listeners;
  std::map<int, uint16_t> port_of;  // listener fd -> port
  std::vector<std::unique_ptr<Relay>> relays;
  uint64_t applied = 0;

  for (;;) {
    std::set<uint16_t> wanted;
    uint64_t gen;
    {
      MutexLock l(mu_);
      if (stop_) break;
      wanted = wanted_;
      gen = wanted_gen_;
    }
    if (gen != applied) {
      SyncListeners(wanted, listen_ip, listeners, port_of);
      applied = gen;
      std::set<uint16_t> now;
      for (const auto& [p, fd] : listeners) now.insert(p);
      {
        MutexLock l(mu_);
        listening_ = std::move(now);
        applied_gen_ = gen;
      }
      applied_cv_.notify_all();
    }

    // The poll set: wake, listeners (while there is room), relays.
    std::vector<pollfd> pfds;
    pfds.push_back({wake_.get(), POLLIN, 0});
    const bool room = relays.size() < opts_.max_connections;
    if (room)
      for (const auto& [p, fd] : listeners) pfds.push_back({fd.get(), POLLIN, 0});
    const size_t first_relay = pfds.size();
    for (const auto& r : relays) {
      short ce, ge;
      RelayInterest(*r, opts_.buffer_bytes, &ce, &ge);
      pfds.push_back({r->client.get(), ce, 0});
      pfds.push_back({r->guest.get(), ge, 0});
    }
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfds[0].revents & POLLIN) {
      uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof v);
    }
    // Relays first (their indexes follow the vector as it was).
    for (size_t i = 0; i < relays.size(); ++i)
      PumpRelay(*relays[i], pfds[first_relay + 2 * i].revents, pfds[first_relay + 2 * i + 1].revents,
                opts_.buffer_bytes);
    std::erase_if(relays, [](const std::unique_ptr<Relay>& r) { return r->dead; });
    // New clients.
    if (room) {
      for (size_t i = 1; i < first_relay; ++i) {
        if (!(pfds[i].revents & POLLIN)) continue;
        auto it = port_of.find(pfds[i].fd);
        if (it != port_of.end()) AcceptClients(pfds[i].fd, target_ip, it->second, opts_.max_connections, relays);
      }
    }
    {
      MutexLock l(mu_);
      connections_ = relays.size();
    }
  }
  relays.clear();
  listeners.clear();
  MutexLock l(mu_);
  listening_.clear();
  connections_ = 0;
}

}  // namespace cask::net
