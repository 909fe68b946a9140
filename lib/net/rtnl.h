// Links, addresses, routes and neighbours over rtnetlink: reading them in
// the pod's network namespace on the host, writing them in the guest.
// Domain types only; the agent API's messages are converted at the edges.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/net/netlink.h"

namespace cask::net {

using Mac = std::array<uint8_t, 6>;

// "aa:bb:cc:dd:ee:ff"; parsing refuses anything else (INVALID_ARGUMENT).
std::string FormatMac(const Mac& m);
Result<Mac> ParseMac(const std::string& s);

// An IPv4 or IPv6 address: family AF_INET (4 bytes) or AF_INET6 (16).
struct IpAddr {
  int family = 0;
  std::array<uint8_t, 16> bytes{};
  size_t size() const { return family == AF_INET6 ? 16 : 4; }
  bool operator==(const IpAddr&) const = default;
};
// inet_pton of either family; INVALID_ARGUMENT otherwise.
Result<IpAddr> ParseIp(const std::string& s);
std::string FormatIp(const IpAddr& a);
// Whether the (family, length) pair is a whole address.
std::optional<IpAddr> IpFromBytes(int family, const uint8_t* p, size_t len);

struct Link {
  int index = 0;
  std::string name;
  std::string kind;     // IFLA_INFO_KIND: "veth", "tun", "" for loopback...
  Mac mac{};
  bool has_mac = false;
  uint32_t mtu = 0;
  uint32_t flags = 0;   // IFF_*
};

struct Address {
  int ifindex = 0;
  IpAddr ip;
  uint8_t prefix_len = 0;
  uint8_t scope = 0;    // RT_SCOPE_*
};

struct Route {
  int ifindex = 0;            // output device; 0: none
  int family = 0;
  std::optional<IpAddr> dst;  // none: default route
  uint8_t dst_len = 0;
  std::optional<IpAddr> gateway;
  std::optional<IpAddr> src;  // preferred source
  uint8_t scope = 0;          // RT_SCOPE_*
  uint8_t protocol = 0;       // RTPROT_*
  uint8_t type = 0;           // RTN_*
  uint32_t table = 0;
};

struct Neighbour {
  int ifindex = 0;
  IpAddr ip;
  Mac mac{};
  bool has_mac = false;
  uint16_t state = 0;  // NUD_*
};

// Dumps of the socket's namespace. Routes are those of the main table.
Result<std::vector<Link>> ListLinks(NetlinkSocket& nl);
Result<std::vector<Address>> ListAddresses(NetlinkSocket& nl);
Result<std::vector<Route>> ListRoutes(NetlinkSocket& nl);
Result<std::vector<Neighbour>> ListNeighbours(NetlinkSocket& nl);

// RTM_NEWLINK on an existing link: each field set is changed.
struct LinkChange {
  std::optional<bool> up;
  std::optional<uint32_t> mtu;
  std::optional<std::string> name;  // rename (the link must be down)
};
Status ChangeLink(NetlinkSocket& nl, int ifindex, const LinkChange& change);
Status DeleteLink(NetlinkSocket& nl, int ifindex);
// Sets a link's MAC (IFLA_ADDRESS); some drivers need the link down.
Status SetLinkMac(NetlinkSocket& nl, int ifindex, const Mac& mac);
// Moves a link of the socket's namespace into the namespace `netns_fd`
// (IFLA_NET_NS_FD), keeping its name; it arrives down. ALREADY_EXISTS
// when the target has a link of that name.
Status MoveLinkToNetns(NetlinkSocket& nl, int ifindex, int netns_fd);

Status AddAddress(NetlinkSocket& nl, const Address& a);
// Adds (NLM_F_CREATE|NLM_F_EXCL) to the main table.
Status AddRoute(NetlinkSocket& nl, const Route& r);
// Adds or replaces a permanent entry.
Status AddNeighbour(NetlinkSocket& nl, const Neighbour& n);

}  // namespace cask::net
