#include "lib/net/pod_network.h"

#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <linux/neighbour.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "lib/net/netns.h"
#include "lib/net/tap.h"
#include "lib/net/tc.h"

namespace cask::net {
namespace {

bool IsIpv6LinkLocal(const IpAddr& a) {
  return a.family == AF_INET6 && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80;
}

// Whether a pod address falls in the host link's /30.
bool HostLinkOverlaps(const std::vector<PodInterface>& ifs) {
  IpAddr h = *ParseIp(kHostLinkHost);
  for (const auto& pi : ifs)
    for (const auto& a : pi.addresses)
      if (a.ip.family == AF_INET && a.ip.bytes[0] == h.bytes[0] && a.ip.bytes[1] == h.bytes[1] &&
          a.ip.bytes[2] == h.bytes[2] && (a.ip.bytes[3] & 0xfc) == (h.bytes[3] & 0xfc))
        return true;
  return false;
}

bool Gone(const Error& e) { return e.code() == Code::kNotFound; }

}  // namespace

Result<std::unique_ptr<PodNetwork>> PodNetwork::Create(const std::string& netns_path, std::optional<ReadyTap> ready) {
  std::unique_ptr<PodNetwork> pn(new PodNetwork());
  pn->netns_path_ = netns_path;
  pn->ready_ = std::move(ready);
  CASK_ASSIGN_OR_RETURN(pn->netns_fd_, OpenNetns(netns_path));
  Status st = RunInNetns(pn->netns_fd_.get(), [&] { return pn->Setup(); });
  if (!st.ok()) {
    (void)pn->Close();  // unwinds what Setup made
    return std::move(st).error().Wrap("set up the pod network in " + netns_path);
  }
  return pn;
}

Status PodNetwork::Setup() {
  CASK_ASSIGN_OR_RETURN(NetlinkSocket sock, NetlinkSocket::Open());
  nl_ = std::make_unique<NetlinkSocket>(std::move(sock));
  CASK_ASSIGN_OR_RETURN(std::vector<Link> links, ListLinks(*nl_));
  CASK_ASSIGN_OR_RETURN(std::vector<Address> addrs, ListAddresses(*nl_));

  for (const Link& l : links) {
    if (l.flags & IFF_LOOPBACK) continue;
    if (!l.has_mac) continue;  // not an Ethernet link; a TAP could not stand in for it
    if (l.kind == "tun") continue;
    PodInterface pi;
    pi.name = l.name;
    pi.ifindex = l.index;
    pi.mac = l.mac;
    pi.mtu = l.mtu;
    for (const Address& a : addrs) {
      if (a.ifindex != l.index || IsIpv6LinkLocal(a.ip)) continue;
      pi.addresses.push_back(a);
    }
    if (pi.addresses.empty()) continue;
    if (pi.addresses.size() > kMaxAddressesPerInterface)
      return Error::ResourceExhausted(l.name + " has " + std::to_string(pi.addresses.size()) +
                                      " addresses; at most " + std::to_string(kMaxAddressesPerInterface) +
                                      " are supported");
    if (interfaces_.size() == kMaxInterfaces)
      return Error::ResourceExhausted("more than " + std::to_string(kMaxInterfaces) + " interfaces with addresses");
    interfaces_.push_back(std::move(pi));
  }
  if (ready_ && interfaces_.size() != 1)
    return Error::FailedPrecondition("a ready VM has one NIC; the pod has " + std::to_string(interfaces_.size()) +
                                     " interfaces with addresses");
  if (interfaces_.empty()) return Ok();

  auto device_of = [&](int ifindex) -> const PodInterface* {
    for (const auto& pi : interfaces_)
      if (pi.ifindex == ifindex) return &pi;
    return nullptr;
  };
  CASK_ASSIGN_OR_RETURN(std::vector<Route> routes, ListRoutes(*nl_));
  for (const Route& r : routes) {
    const PodInterface* dev = device_of(r.ifindex);
    if (!dev || r.protocol == RTPROT_KERNEL || r.type != RTN_UNICAST) continue;
    if (r.dst && IsIpv6LinkLocal(*r.dst)) continue;
    if (routes_.size() == kMaxRoutes)
      return Error::ResourceExhausted("more than " + std::to_string(kMaxRoutes) + " routes");
    routes_.push_back(PodRoute{r, dev->name});
  }
  CASK_ASSIGN_OR_RETURN(std::vector<Neighbour> neigh, ListNeighbours(*nl_));
  for (const Neighbour& n : neigh) {
    const PodInterface* dev = device_of(n.ifindex);
    if (!dev || !n.has_mac || !(n.state & NUD_PERMANENT)) continue;
    if (neighbours_.size() == kMaxNeighbours)
      return Error::ResourceExhausted("more than " + std::to_string(kMaxNeighbours) + " permanent neighbours");
    neighbours_.push_back(PodNeighbour{n, dev->name});
  }

  for (size_t i = 0; i < interfaces_.size(); ++i) {
    PodInterface& pi = interfaces_[i];
    pi.tap_name = "tap" + std::to_string(i) + "_cask";
    if (ready_) {
      CASK_TRY(AdoptReadyTap(pi));
    } else {
      CASK_ASSIGN_OR_RETURN(pi.tap_fd, CreateTap(pi.tap_name));
    }
    CASK_ASSIGN_OR_RETURN(std::vector<Link> now, ListLinks(*nl_));
    for (const Link& l : now)
      if (l.name == pi.tap_name) {
        pi.tap_ifindex = l.index;
        pi.tap_mac = l.mac;
      }
    if (pi.tap_ifindex == 0) return Error::Internal("TAP " + pi.tap_name + " vanished after creation");
    LinkChange up;
    up.up = true;
    up.mtu = pi.mtu;
    CASK_TRY_CTX(ChangeLink(*nl_, pi.tap_ifindex, up), "bring up " + pi.tap_name);
    CASK_TRY(AddIngressQdisc(*nl_, pi.ifindex));
    qdisc_links_.push_back(pi.ifindex);
    CASK_TRY(AddIngressQdisc(*nl_, pi.tap_ifindex));
    CASK_TRY_CTX(AddRedirectFilter(*nl_, pi.ifindex, pi.tap_ifindex), pi.name + " -> " + pi.tap_name);
    CASK_TRY_CTX(AddRedirectFilter(*nl_, pi.tap_ifindex, pi.ifindex), pi.tap_name + " -> " + pi.name);
  }
  if (!HostLinkOverlaps(interfaces_)) {
    PodInterface& pi = interfaces_[0];
    IpAddr host = *ParseIp(kHostLinkHost), guest = *ParseIp(kHostLinkGuest);
    CASK_TRY_CTX(AddAddress(*nl_, Address{pi.tap_ifindex, host, kHostLinkPrefix, RT_SCOPE_LINK}), "host link on " + pi.tap_name);
    Neighbour n;
    n.ifindex = pi.tap_ifindex;
    n.ip = guest;
    n.mac = pi.mac;
    n.has_mac = true;
    CASK_TRY_CTX(AddNeighbour(*nl_, n), "host link on " + pi.tap_name);
    uint32_t be;
    std::memcpy(&be, host.bytes.data(), 4);
    CASK_TRY_CTX(AddLocalDeliveryFilter(*nl_, pi.tap_ifindex, be), "host link on " + pi.tap_name);
    host_link_ = HostLink{pi.name, pi.tap_mac};
  }
  return Ok();
}

Status PodNetwork::AdoptReadyTap(PodInterface& pi) {
  ReadyTap r = std::move(*ready_);
  ready_.reset();
  const std::string what = "adopt the ready TAP " + BoundedString(r.name, 32);
  ifreq ifr{};
  if (::ioctl(r.fd.get(), TUNGETIFF, &ifr) != 0) return Error::Sys(Code::kInvalidArgument, errno, what + ": TUNGETIFF");
  if (std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ)) != r.name)
    return Error::InvalidArgument(what + ": its fd holds another device");
  // Moved by a socket in the namespace it is in now, found by name there.
  CASK_TRY_CTX(RunInNetns(r.netns.get(),
                          [&]() -> Status {
                            CASK_ASSIGN_OR_RETURN(NetlinkSocket h, NetlinkSocket::Open());
                            CASK_ASSIGN_OR_RETURN(std::vector<Link> links, ListLinks(h));
                            for (const Link& l : links)
                              if (l.name == r.name && l.kind == "tun")
                                return MoveLinkToNetns(h, l.index, netns_fd_.get());
                            return Error::NotFound("no TAP " + r.name + " in its namespace");
                          }),
               what);
  // In the pod namespace now (down, its index possibly changed): ours.
  CASK_ASSIGN_OR_RETURN(std::vector<Link> links, ListLinks(*nl_));
  for (const Link& l : links)
    if (l.name == r.name) pi.tap_ifindex = l.index;
  if (pi.tap_ifindex == 0) return Error::Internal(what + ": not in the pod namespace after the move");
  pi.tap_fd = std::move(r.fd);
  pi.guest_mac_now = r.guest_mac;
  CASK_TRY_CTX(ChangeLink(*nl_, pi.tap_ifindex, LinkChange{{}, {}, pi.tap_name}), what + ": rename to " + pi.tap_name);
  return Ok();
}

PodNetwork::~PodNetwork() { (void)Close(); }

Status PodNetwork::Close() {
  if (closed_) return close_result_;
  closed_ = true;
  std::optional<Error> first;
  auto note = [&](Status st) {
    if (!st.ok() && !Gone(st.error()) && !first) first = std::move(st).error();
  };
  if (nl_) {
    // The veth's qdisc (and so its filter) first: no frame is redirected
    // to a TAP being deleted.
    for (int ifindex : qdisc_links_) note(DeleteIngressQdisc(*nl_, ifindex));
    for (PodInterface& pi : interfaces_) {
      if (pi.tap_ifindex) note(DeleteLink(*nl_, pi.tap_ifindex).Context("delete " + pi.tap_name));
      pi.tap_fd.Reset();
    }
  }
  for (PodInterface& pi : interfaces_) pi.tap_fd.Reset();
  qdisc_links_.clear();
  nl_.reset();
  if (first) close_result_ = std::move(*first).Wrap("tear down the pod network in " + netns_path_);
  return close_result_;
}

}  // namespace cask::net
