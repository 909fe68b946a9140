#include "lib/net/rtnl.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>

#include <cstdio>
#include <cstring>

namespace cask::net {

std::string FormatMac(const Mac& m) {
  char b[18];
  std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return b;
}

Result<Mac> ParseMac(const std::string& s) {
  Mac m{};
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (s.size() != 17) return Error::InvalidArgument("MAC address \"" + BoundedString(s, 64) + "\": want aa:bb:cc:dd:ee:ff");
  for (size_t i = 0; i < 6; ++i) {
    int hi = hex(s[i * 3]), lo = hex(s[i * 3 + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
      return Error::InvalidArgument("MAC address \"" + BoundedString(s, 64) + "\": want aa:bb:cc:dd:ee:ff");
    m[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return m;
}

Result<IpAddr> ParseIp(const std::string& s) {
  IpAddr a;
  if (::inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (::inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return Error::InvalidArgument("IP address \"" + BoundedString(s, 64) + "\" is neither IPv4 nor IPv6");
}

std::string FormatIp(const IpAddr& a) {
  char b[INET6_ADDRSTRLEN] = {};
  if (a.family != AF_INET && a.family != AF_INET6) return "?";
  ::inet_ntop(a.family, a.bytes.data(), b, sizeof b);
  return b;
}

std::optional<IpAddr> IpFromBytes(int family, const uint8_t* p, size_t len) {
  IpAddr a;
  a.family = family;
  if ((family == AF_INET && len == 4) || (family == AF_INET6 && len == 16)) {
    std::memcpy(a.bytes.data(), p, len);
    return a;
  }
  return std::nullopt;
}

namespace {

std::optional<IpAddr> IpAttr(const NlAttrs& a, uint16_t type, int family) {
  auto s = a.Get(type);
  if (s.empty()) return std::nullopt;
  return IpFromBytes(family, s.data(), s.size());
}

// Copies a 6-byte hardware address attribute into `out`; false when it is
// absent or of another length.
bool MacAttr(const NlAttrs& a, uint16_t type, Mac& out) {
  auto s = a.Get(type);
  if (s.size() != out.size()) return false;
  std::memcpy(out.data(), s.data(), out.size());
  return true;
}

}  // namespace

// The dump requests below carry a zeroed family header: AF_UNSPEC, every
// family and link.

Result<std::vector<Link>> ListLinks(NetlinkSocket& nl) {
  NlMessage m(RTM_GETLINK, 0);
  m.PutHeader(ifinfomsg{});
  std::vector<Link> out;
  CASK_TRY(DumpEach<ifinfomsg>(nl, m, "list links", RTM_NEWLINK, IFLA_MAX,
                               [&](const ifinfomsg& i, const NlAttrs& a) -> Status {
    Link l;
    l.index = i.ifi_index;
    l.flags = i.ifi_flags;
    l.name = a.String(IFLA_IFNAME);
    l.mtu = a.U32(IFLA_MTU);
    l.has_mac = MacAttr(a, IFLA_ADDRESS, l.mac);
    l.kind = a.Nested(IFLA_LINKINFO, IFLA_INFO_MAX).String(IFLA_INFO_KIND);
    out.push_back(std::move(l));
    return Ok();
  }));
  return out;
}

Result<std::vector<Address>> ListAddresses(NetlinkSocket& nl) {
  NlMessage m(RTM_GETADDR, 0);
  m.PutHeader(ifaddrmsg{});
  std::vector<Address> out;
  CASK_TRY(DumpEach<ifaddrmsg>(nl, m, "list addresses", RTM_NEWADDR, IFA_MAX,
                               [&](const ifaddrmsg& i, const NlAttrs& a) -> Status {
    // IFA_LOCAL is the address on point-to-point links; IFA_ADDRESS else.
    auto ip = IpAttr(a, IFA_LOCAL, i.ifa_family);
    if (!ip) ip = IpAttr(a, IFA_ADDRESS, i.ifa_family);
    if (!ip) return Ok();
    out.push_back(Address{static_cast<int>(i.ifa_index), *ip, i.ifa_prefixlen, i.ifa_scope});
    return Ok();
  }));
  return out;
}

Result<std::vector<Route>> ListRoutes(NetlinkSocket& nl) {
  NlMessage m(RTM_GETROUTE, 0);
  m.PutHeader(rtmsg{});
  std::vector<Route> out;
  CASK_TRY(DumpEach<rtmsg>(nl, m, "list routes", RTM_NEWROUTE, RTA_MAX, [&](const rtmsg& r, const NlAttrs& a) -> Status {
    uint32_t table = a.Has(RTA_TABLE) ? a.U32(RTA_TABLE) : r.rtm_table;
    if (table != RT_TABLE_MAIN) return Ok();
    Route out_r;
    out_r.family = r.rtm_family;
    out_r.ifindex = static_cast<int>(a.U32(RTA_OIF));
    out_r.dst = IpAttr(a, RTA_DST, r.rtm_family);
    out_r.dst_len = r.rtm_dst_len;
    out_r.gateway = IpAttr(a, RTA_GATEWAY, r.rtm_family);
    out_r.src = IpAttr(a, RTA_PREFSRC, r.rtm_family);
    out_r.scope = r.rtm_scope;
    out_r.protocol = r.rtm_protocol;
    out_r.type = r.rtm_type;
    out_r.table = table;
    out.push_back(std::move(out_r));
    return Ok();
  }));
  return out;
}

Result<std::vector<Neighbour>> ListNeighbours(NetlinkSocket& nl) {
  NlMessage m(RTM_GETNEIGH, 0);
  m.PutHeader(ndmsg{});
  std::vector<Neighbour> out;
  CASK_TRY(DumpEach<ndmsg>(nl, m, "list neighbours", RTM_NEWNEIGH, NDA_MAX,
                           [&](const ndmsg& n, const NlAttrs& a) -> Status {
    auto ip = IpAttr(a, NDA_DST, n.ndm_family);
    if (!ip) return Ok();
    Neighbour nb;
    nb.ifindex = n.ndm_ifindex;
    nb.ip = *ip;
    nb.state = n.ndm_state;
    nb.has_mac = MacAttr(a, NDA_LLADDR, nb.mac);
    out.push_back(std::move(nb));
    return Ok();
  }));
  return out;
}

Status ChangeLink(NetlinkSocket& nl, int ifindex, const LinkChange& c) {
  NlMessage m(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  if (c.up) {
    ifi.ifi_change = IFF_UP;
    ifi.ifi_flags = *c.up ? IFF_UP : 0;
  }
  m.PutHeader(ifi);
  if (c.mtu) m.PutU32(IFLA_MTU, *c.mtu);
  if (c.name) m.PutString(IFLA_IFNAME, *c.name);
  return nl.Request(m, "change link " + std::to_string(ifindex));
}

Status DeleteLink(NetlinkSocket& nl, int ifindex) {
  NlMessage m(RTM_DELLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  m.PutHeader(ifi);
  return nl.Request(m, "delete link " + std::to_string(ifindex));
}

Status SetLinkMac(NetlinkSocket& nl, int ifindex, const Mac& mac) {
  NlMessage m(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  m.PutHeader(ifi);
  m.PutAttr(IFLA_ADDRESS, mac.data(), mac.size());
  return nl.Request(m, "set the MAC of link " + std::to_string(ifindex));
}

Status MoveLinkToNetns(NetlinkSocket& nl, int ifindex, int netns_fd) {
  NlMessage m(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  m.PutHeader(ifi);
  m.PutU32(IFLA_NET_NS_FD, static_cast<uint32_t>(netns_fd));
  return nl.Request(m, "move link " + std::to_string(ifindex) + " to another network namespace");
}

Status AddAddress(NetlinkSocket& nl, const Address& a) {
  NlMessage m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<uint8_t>(a.ip.family);
  ifa.ifa_prefixlen = a.prefix_len;
  ifa.ifa_index = static_cast<uint32_t>(a.ifindex);
  ifa.ifa_scope = a.scope;
  m.PutHeader(ifa);
  m.PutAttr(IFA_LOCAL, a.ip.bytes.data(), a.ip.size());
  m.PutAttr(IFA_ADDRESS, a.ip.bytes.data(), a.ip.size());
  if (a.ip.family == AF_INET && a.prefix_len < 31) {
    IpAddr brd = a.ip;
    uint32_t host_mask = a.prefix_len == 0 ? 0xffffffffu : (0xffffffffu >> a.prefix_len);
    uint32_t v;
    std::memcpy(&v, brd.bytes.data(), 4);
    v = htonl(ntohl(v) | host_mask);
    std::memcpy(brd.bytes.data(), &v, 4);
    m.PutAttr(IFA_BROADCAST, brd.bytes.data(), 4);
  }
  return nl.Request(m, "add address " + FormatIp(a.ip) + "/" + std::to_string(a.prefix_len));
}

Status AddRoute(NetlinkSocket& nl, const Route& r) {
  NlMessage m(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  rtmsg rt{};
  rt.rtm_family = static_cast<uint8_t>(r.family);
  rt.rtm_dst_len = r.dst ? r.dst_len : 0;
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = r.protocol ? r.protocol : static_cast<uint8_t>(RTPROT_BOOT);
  rt.rtm_scope = r.scope;
  rt.rtm_type = r.type ? r.type : static_cast<uint8_t>(RTN_UNICAST);
  m.PutHeader(rt);
  if (r.dst) m.PutAttr(RTA_DST, r.dst->bytes.data(), r.dst->size());
  if (r.gateway) m.PutAttr(RTA_GATEWAY, r.gateway->bytes.data(), r.gateway->size());
  if (r.src) m.PutAttr(RTA_PREFSRC, r.src->bytes.data(), r.src->size());
  if (r.ifindex) m.PutU32(RTA_OIF, static_cast<uint32_t>(r.ifindex));
  std::string what = "add route " + (r.dst ? FormatIp(*r.dst) + "/" + std::to_string(r.dst_len) : std::string("default"));
  if (r.gateway) what += " via " + FormatIp(*r.gateway);
  return nl.Request(m, what);
}

Status AddNeighbour(NetlinkSocket& nl, const Neighbour& n) {
  NlMessage m(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
  ndmsg nd{};
  nd.ndm_family = static_cast<uint8_t>(n.ip.family);
  nd.ndm_ifindex = n.ifindex;
  nd.ndm_state = NUD_PERMANENT;
  m.PutHeader(nd);
  m.PutAttr(NDA_DST, n.ip.bytes.data(), n.ip.size());
  m.PutAttr(NDA_LLADDR, n.mac.data(), n.mac.size());
  return nl.Request(m, "add neighbour " + FormatIp(n.ip));
}

}  // namespace cask::net
