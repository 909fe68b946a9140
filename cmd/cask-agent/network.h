// The guest side of the pod network: the host sends the pod interface's
// MAC, name, MTU, addresses, routes and permanent neighbours
// (ConfigureNetwork); the agent finds the virtio NIC with that MAC and
// configures it over rtnetlink. Everything in the request comes from the
// host but is still checked in full (ValidateNetworkRequest) before the
// first change, so a bad request changes nothing.
#pragma once

#include <chrono>
#include <optional>
#include <set>
#include <string_view>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/net/netlink.h"
#include "lib/net/network_setup.h"
#include "lib/net/rtnl.h"

namespace cask::agent {

// Bounds (also in proto/agent.proto): a pod has a handful of interfaces;
// these cap what one request can make the agent hold and do.
inline constexpr size_t kMaxNetInterfaces = 8;
inline constexpr size_t kMaxNetAddresses = 16;  // per interface
inline constexpr size_t kMaxNetRoutes = 64;
inline constexpr size_t kMaxNetNeighbours = 64;
inline constexpr uint32_t kMinMtu = 68;
inline constexpr uint32_t kMinMtuIpv6 = 1280;
inline constexpr uint32_t kMaxMtu = 65535;

// The request arrives as the host sent it, a net::NetworkSetup (strings
// from the wire). The validated plan:
struct PlannedInterface {
  std::string name;
  net::Mac mac{};
  // The MAC the NIC has now, when the host says it differs (a pool VM's
  // NIC): the NIC is found by either and gets `mac`.
  std::optional<net::Mac> current_mac;
  uint32_t mtu = 0;
  std::vector<net::Address> addresses;  // ifindex filled in at apply time
};
struct PlannedRoute {
  net::Route route;   // ifindex filled in at apply time
  std::string device;
};
struct PlannedNeighbour {
  net::Neighbour neighbour;
  std::string device;
};
struct NetworkPlan {
  std::vector<PlannedInterface> interfaces;
  std::vector<PlannedRoute> routes;
  std::vector<PlannedNeighbour> neighbours;
};

// INVALID_ARGUMENT naming the first bad field ("interfaces[0].mtu: ...").
Result<NetworkPlan> ValidateNetworkRequest(const net::NetworkSetup& req);

// Applies a validated plan in the calling thread's namespace: waits up to
// `nic_timeout` for a link with each MAC (or current_mac; the NIC's driver
// may still be probing), sets `mac` on one found by current_mac (down
// first), renames it (when its name differs), sets the MTU, brings it
// and lo up, adds the addresses, then the routes (direct ones before
// those through a gateway), then the neighbours. An address or route that
// already exists is not an error (a retried call converges). NOT_FOUND
// when a MAC never shows up.
Status ApplyNetworkPlan(net::NetlinkSocket& nl, const NetworkPlan& plan, std::chrono::milliseconds nic_timeout);

}  // namespace cask::agent

namespace cask::agent {

// The ConfigureNetwork call: validates, loads the virtio-net driver (a
// module on distribution kernels, built in on cask's own; the first pod
// with a network pays for it, others never do), then applies the plan in
// the agent's network namespace, waiting up to 10 s for the NICs.
Status ConfigureGuestNetwork(const net::NetworkSetup& req);

}  // namespace cask::agent

namespace cask::agent {

// Listening TCP ports from the text of /proc/net/tcp or /proc/net/tcp6
// (state 0A), bound to an address other than loopback, merged into
// `ports`; at most kMaxListeners in all (the rest is dropped).
inline constexpr size_t kMaxListeners = 64;
void ParseTcpListeners(std::string_view proc_net_tcp, std::set<uint16_t>* ports);
// Both files of the calling thread's namespace.
std::set<uint16_t> TcpListeners();

}  // namespace cask::agent
