#include "cmd/cask-agent/network.h"

#include <linux/if.h>

#include <algorithm>
#include <set>
#include <thread>

namespace cask::agent {
namespace {

Error Bad(const std::string& field, const std::string& why) {
  return Error::InvalidArgument("ConfigureNetwork: " + field + ": " + why);
}

bool ValidIfName(const std::string& n) {
  if (n.empty() || n.size() >= IFNAMSIZ || n == "." || n == "..") return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

// A unicast, non-zero MAC.
Result<net::Mac> UnicastMac(const std::string& field, const std::string& s) {
  auto m = net::ParseMac(s);
  if (!m.ok()) return Bad(field, m.error().message());
  if ((*m)[0] & 1) return Bad(field, "multicast MAC " + s);
  if (std::all_of(m->begin(), m->end(), [](uint8_t b) { return b == 0; })) return Bad(field, "all-zero MAC");
  return *m;
}

Result<net::IpAddr> Ip(const std::string& field, const std::string& s) {
  auto ip = net::ParseIp(s);
  if (!ip.ok()) return Bad(field, ip.error().message());
  return *ip;
}

uint32_t MaxPrefix(int family) { return family == AF_INET6 ? 128 : 32; }

// interfaces[i] (named `f` in errors); its name and MAC must not repeat
// one in `names` and `macs`, which collect them.
Result<PlannedInterface> PlanInterface(const net::InterfaceSetup& in, const std::string& f,
                                       std::set<std::string>& names, std::set<net::Mac>& macs) {
  PlannedInterface pi;
  if (!ValidIfName(in.name) || in.name == "lo")
    return Bad(f + ".name", "\"" + BoundedString(in.name, 32) + "\" is not a usable interface name (1-15 of A-Za-z0-9_.-, not lo)");
  if (!names.insert(in.name).second) return Bad(f + ".name", "duplicate name " + in.name);
  pi.name = in.name;
  CASK_ASSIGN_OR_RETURN(pi.mac, UnicastMac(f + ".mac", in.mac));
  if (!macs.insert(pi.mac).second) return Bad(f + ".mac", "duplicate MAC " + in.mac);
  if (!in.current_mac.empty()) {
    CASK_ASSIGN_OR_RETURN(net::Mac now, UnicastMac(f + ".current_mac", in.current_mac));
    // Both MACs name this NIC while it changes: neither may name another.
    if (now != pi.mac) {
      if (!macs.insert(now).second) return Bad(f + ".current_mac", "duplicate MAC " + in.current_mac);
      pi.current_mac = now;
    }
  }
  if (in.addresses.size() > kMaxNetAddresses)
    return Bad(f + ".addresses", std::to_string(in.addresses.size()) + " given, at most " +
                                     std::to_string(kMaxNetAddresses));
  bool v6 = false;
  for (size_t j = 0; j < in.addresses.size(); ++j) {
    const std::string af = f + ".addresses[" + std::to_string(j) + "]";
    CASK_ASSIGN_OR_RETURN(net::IpAddr ip, Ip(af + ".address", in.addresses[j].first));
    uint32_t plen = in.addresses[j].second;
    if (plen > MaxPrefix(ip.family))
      return Bad(af + ".prefix_len", std::to_string(plen) + " is beyond " + std::to_string(MaxPrefix(ip.family)));
    v6 |= ip.family == AF_INET6;
    pi.addresses.push_back(net::Address{0, ip, static_cast<uint8_t>(plen), 0});
  }
  uint32_t min_mtu = v6 ? kMinMtuIpv6 : kMinMtu;
  if (in.mtu < min_mtu || in.mtu > kMaxMtu)
    return Bad(f + ".mtu", std::to_string(in.mtu) + " is outside " + std::to_string(min_mtu) + ".." +
                               std::to_string(kMaxMtu));
  pi.mtu = in.mtu;
  return pi;
}

// routes[i] (named `f` in errors), on one of the interfaces in `names`.
Result<PlannedRoute> PlanRoute(const net::RouteSetup& in, const std::string& f, const std::set<std::string>& names) {
  if (!names.count(in.device)) return Bad(f + ".device", "\"" + BoundedString(in.device, 32) + "\" is not one of the interfaces");
  PlannedRoute pr;
  pr.device = in.device;
  net::Route& r = pr.route;
  int family = 0;
  if (!in.dest.empty()) {
    CASK_ASSIGN_OR_RETURN(net::IpAddr d, Ip(f + ".dest", in.dest));
    family = d.family;
    if (in.dest_prefix_len > MaxPrefix(family))
      return Bad(f + ".dest_prefix_len", std::to_string(in.dest_prefix_len) + " is beyond " +
                                             std::to_string(MaxPrefix(family)));
    r.dst = d;
    r.dst_len = static_cast<uint8_t>(in.dest_prefix_len);
  } else if (in.dest_prefix_len != 0) {
    return Bad(f + ".dest_prefix_len", "must be 0 for a default route");
  }
  auto same_family = [&](const std::string& field, const net::IpAddr& a) -> Status {
    if (family == 0) family = a.family;
    if (a.family != family) return Bad(field, "mixes IPv4 and IPv6");
    return Ok();
  };
  if (!in.gateway.empty()) {
    CASK_ASSIGN_OR_RETURN(net::IpAddr g, Ip(f + ".gateway", in.gateway));
    CASK_TRY(same_family(f + ".gateway", g));
    r.gateway = g;
  }
  if (!in.source.empty()) {
    CASK_ASSIGN_OR_RETURN(net::IpAddr s, Ip(f + ".source", in.source));
    CASK_TRY(same_family(f + ".source", s));
    r.src = s;
  }
  if (family == 0) return Bad(f, "a default route needs a gateway");
  if (in.scope != RT_SCOPE_UNIVERSE && in.scope != RT_SCOPE_LINK && in.scope != RT_SCOPE_HOST)
    return Bad(f + ".scope", std::to_string(in.scope) + " is not universe (0), link (253) or host (254)");
  if (r.gateway && in.scope != RT_SCOPE_UNIVERSE) return Bad(f + ".scope", "a route via a gateway has scope universe");
  r.family = family;
  r.scope = static_cast<uint8_t>(in.scope);
  return pr;
}

// neighbours[i] (named `f` in errors), on one of the interfaces in `names`.
Result<PlannedNeighbour> PlanNeighbour(const net::NeighbourSetup& in, const std::string& f,
                                       const std::set<std::string>& names) {
  if (!names.count(in.device)) return Bad(f + ".device", "\"" + BoundedString(in.device, 32) + "\" is not one of the interfaces");
  PlannedNeighbour pn;
  pn.device = in.device;
  CASK_ASSIGN_OR_RETURN(pn.neighbour.ip, Ip(f + ".address", in.address));
  CASK_ASSIGN_OR_RETURN(pn.neighbour.mac, UnicastMac(f + ".mac", in.mac));
  pn.neighbour.has_mac = true;
  return pn;
}

}  // namespace

Result<NetworkPlan> ValidateNetworkRequest(const net::NetworkSetup& req) {
  if (req.interfaces.size() > kMaxNetInterfaces)
    return Bad("interfaces", std::to_string(req.interfaces.size()) + " given, at most " +
                                 std::to_string(kMaxNetInterfaces));
  if (req.routes.size() > kMaxNetRoutes)
    return Bad("routes", std::to_string(req.routes.size()) + " given, at most " + std::to_string(kMaxNetRoutes));
  if (req.neighbours.size() > kMaxNetNeighbours)
    return Bad("neighbours", std::to_string(req.neighbours.size()) + " given, at most " +
                                 std::to_string(kMaxNetNeighbours));
  NetworkPlan plan;
  std::set<std::string> names;
  std::set<net::Mac> macs;
  for (size_t i = 0; i < req.interfaces.size(); ++i) {
    CASK_ASSIGN_OR_RETURN(PlannedInterface pi,
                          PlanInterface(req.interfaces[i], "interfaces[" + std::to_string(i) + "]", names, macs));
    plan.interfaces.push_back(std::move(pi));
  }
  for (size_t i = 0; i < req.routes.size(); ++i) {
    CASK_ASSIGN_OR_RETURN(PlannedRoute pr, PlanRoute(req.routes[i], "routes[" + std::to_string(i) + "]", names));
    plan.routes.push_back(std::move(pr));
  }
  for (size_t i = 0; i < req.neighbours.size(); ++i) {
    CASK_ASSIGN_OR_RETURN(PlannedNeighbour pn,
                          PlanNeighbour(req.neighbours[i], "neighbours[" + std::to_string(i) + "]", names));
    plan.neighbours.push_back(std::move(pn));
  }
  return plan;
}

namespace {

Status IgnoreExisting(Status st) {
  if (!st.ok() && st.error().code() == Code::kAlreadyExists) return Ok();
  return st;
}

}  // namespace

Status ApplyNetworkPlan(net::NetlinkSocket& nl, const NetworkPlan& plan, std::chrono::milliseconds nic_timeout) {
  // The NICs: wait until every MAC is present.
  std::vector<net::Link> links;
  const auto deadline = std::chrono::steady_clock::now() + nic_timeout;
  std::vector<int> ifindex(plan.interfaces.size(), 0);
  int lo = 0;
  for (;;) {
    CASK_ASSIGN_OR_RETURN(links, net::ListLinks(nl));
    size_t found = 0;
    for (size_t i = 0; i < plan.interfaces.size(); ++i) {
      ifindex[i] = 0;
      for (const auto& l : links) {
        const PlannedInterface& pi = plan.interfaces[i];
        if (l.has_mac && !(l.flags & IFF_LOOPBACK) && (l.mac == pi.mac || (pi.current_mac && l.mac == *pi.current_mac)))
          ifindex[i] = l.index;
        if (l.flags & IFF_LOOPBACK) lo = l.index;
      }
      if (ifindex[i]) ++found;
    }
    if (found == plan.interfaces.size()) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      for (size_t i = 0; i < plan.interfaces.size(); ++i)
        if (!ifindex[i])
          return Error::NotFound("no network interface with MAC " + net::FormatMac(plan.interfaces[i].mac) +
                                 " (for " + plan.interfaces[i].name + ") appeared in the guest");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (lo) CASK_TRY_CTX(net::ChangeLink(nl, lo, net::LinkChange{true, {}, {}}), "bring up lo");

  for (size_t i = 0; i < plan.interfaces.size(); ++i) {
    const PlannedInterface& pi = plan.interfaces[i];
    std::string current;
    net::Mac mac_now{};
    for (const auto& l : links)
      if (l.index == ifindex[i]) {
        current = l.name;
        mac_now = l.mac;
      }
    if (mac_now != pi.mac) {
      CASK_TRY_CTX(net::ChangeLink(nl, ifindex[i], net::LinkChange{false, {}, {}}), "bring down " + current);
      CASK_TRY_CTX(net::SetLinkMac(nl, ifindex[i], pi.mac), "set the MAC of " + current + " to " + net::FormatMac(pi.mac));
    }
    if (current != pi.name) {
      // Another link holding the wanted name (an earlier NIC of this
      // guest) is a conflict the host has to resolve.
      for (const auto& l : links)
        if (l.name == pi.name && l.index != ifindex[i])
          return Error::AlreadyExists("guest link " + pi.name + " exists and has another MAC");
      CASK_TRY_CTX(net::ChangeLink(nl, ifindex[i], net::LinkChange{false, {}, {}}), "bring down " + current);
      CASK_TRY_CTX(net::ChangeLink(nl, ifindex[i], net::LinkChange{{}, {}, pi.name}), "rename " + current + " to " + pi.name);
    }
    CASK_TRY_CTX(net::ChangeLink(nl, ifindex[i], net::LinkChange{true, pi.mtu, {}}), "bring up " + pi.name);
    for (net::Address a : pi.addresses) {
      a.ifindex = ifindex[i];
      CASK_TRY_CTX(IgnoreExisting(net::AddAddress(nl, a)), pi.name);
    }
  }
  auto index_of = [&](const std::string& name) {
    for (size_t i = 0; i < plan.interfaces.size(); ++i)
      if (plan.interfaces[i].name == name) return ifindex[i];
    return 0;
  };
  // Direct routes first: a gateway must be reachable when its route is added.
  for (bool via_gateway : {false, true}) {
    for (const PlannedRoute& pr : plan.routes) {
      if (pr.route.gateway.has_value() != via_gateway) continue;
      net::Route r = pr.route;
      r.ifindex = index_of(pr.device);
      CASK_TRY_CTX(IgnoreExisting(net::AddRoute(nl, r)), "device " + pr.device);
    }
  }
  for (const PlannedNeighbour& pn : plan.neighbours) {
    net::Neighbour n = pn.neighbour;
    n.ifindex = index_of(pn.device);
    CASK_TRY_CTX(net::AddNeighbour(nl, n), "device " + pn.device);
  }
  return Ok();
}

}  // namespace cask::agent

#include <sys/utsname.h>

#include "cmd/cask-agent/modules.h"

namespace cask::agent {

namespace {
// How long a NIC may take to appear after the driver is loaded (TCG is slow).
constexpr std::chrono::milliseconds kNicTimeout{10'000};
}  // namespace

Status ConfigureGuestNetwork(const net::NetworkSetup& req) {
  CASK_ASSIGN_OR_RETURN(NetworkPlan plan, ValidateNetworkRequest(req));
  std::string driver_note;
  if (!plan.interfaces.empty()) {
    struct utsname u;
    ::uname(&u);
    ModuleLoadOptions mo;
    mo.release_dir = std::string("/lib/modules/") + u.release;
    mo.wanted = {"virtio_net"};
    // A kernel without modules (virtio-net built in) has no modules.dep:
    // not an error by itself; the NIC showing up or not decides.
    auto report = LoadKernelModules(mo);
    if (!report.ok()) driver_note = report.error().ToString();
    else if (!report->failed.empty()) driver_note = report->failed[0];
    else if (!report->missing.empty()) driver_note = "virtio_net is neither a module nor built in";
  }
  CASK_ASSIGN_OR_RETURN(net::NetlinkSocket nl, net::NetlinkSocket::Open());
  Status st = ApplyNetworkPlan(nl, plan, kNicTimeout);
  if (!st.ok() && !driver_note.empty()) st = std::move(st).error().Wrap("virtio-net driver: " + driver_note);
  return std::move(st).Context("configure the guest network");
}

}  // namespace cask::agent

#include "lib/base/fs.h"

namespace cask::agent {

void ParseTcpListeners(std::string_view text, std::set<uint16_t>* ports) {
  size_t pos = text.find('\n');  // the header line
  while (pos != std::string_view::npos && ports->size() < kMaxListeners) {
    size_t start = pos + 1;
    pos = text.find('\n', start);
    std::string_view line = text.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
    // "  0: 00000000:1F90 00000000:0000 0A ..."
    std::vector<std::string_view> f;
    size_t i = 0;
    while (i < line.size() && f.size() < 4) {
      while (i < line.size() && line[i] == ' ') ++i;
      size_t j = line.find(' ', i);
      if (j == std::string_view::npos) j = line.size();
      if (j > i) f.push_back(line.substr(i, j - i));
      i = j;
    }
    if (f.size() < 4 || f[3] != "0A") continue;
    std::string_view local = f[1];
    size_t colon = local.rfind(':');
    if (colon == std::string_view::npos || local.size() - colon - 1 != 4) continue;
    std::string_view addr = local.substr(0, colon);
    // Loopback: 127.x.x.x (stored little-endian: the last byte pair is
    // 7F) and ::1 (and its IPv4-mapped form).
    if (addr.size() == 8 && addr.substr(6, 2) == "7F") continue;
    if (addr == "00000000000000000000000001000000") continue;
    if (addr.size() == 32 && addr.substr(16, 8) == "FFFF0000" && addr.substr(30, 2) == "7F") continue;
    unsigned port = 0;
    bool ok = true;
    for (char c : local.substr(colon + 1)) {
      int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
      if (v < 0) ok = false;
      port = port * 16 + static_cast<unsigned>(v < 0 ? 0 : v);
    }
    if (ok && port > 0 && port <= 65535) ports->insert(static_cast<uint16_t>(port));
  }
}

std::set<uint16_t> TcpListeners() {
  std::set<uint16_t> ports;
  for (const char* f : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    auto text = ReadFile(f);
    if (text.ok()) ParseTcpListeners(*text, &ports);
  }
  return ports;
}

}  // namespace cask::agent
