// Traffic control over rtnetlink: the ingress qdisc and the u32 match-all
// filter whose mirred action redirects every frame arriving on one link
// out of another. This is how a pod's veth and the VM's TAP are joined:
// what the veth receives leaves through the TAP (to the guest), what the
// guest sends leaves through the veth. The host kernels cask runs on lack
// the matchall and flower classifiers, so the match-all is a u32 filter
// with one key of mask 0 (it matches every packet).
#pragma once

#include <cstdint>
#include <vector>

#include "lib/base/result.h"
#include "lib/net/netlink.h"

namespace cask::net {

// Handle of the ingress qdisc, "ffff:".
inline constexpr uint32_t kIngressHandle = 0xffff0000u;

// tc qdisc add dev <ifindex> ingress (ALREADY_EXISTS if there is one).
Status AddIngressQdisc(NetlinkSocket& nl, int ifindex);
// tc qdisc del dev <ifindex> ingress; its filters go with it. NOT_FOUND
// when the link or the qdisc is gone.
Status DeleteIngressQdisc(NetlinkSocket& nl, int ifindex);
// tc filter add dev <from> parent ffff: protocol all u32 match u32 0 0
//   action mirred egress redirect dev <to>
Status AddRedirectFilter(NetlinkSocket& nl, int from_ifindex, int to_ifindex);

// tc filter add dev <ifindex> parent ffff: protocol ip prio <before the
// redirect> u32 match ip dst <ipv4>/32
// (no action: a matching IPv4 packet is delivered to the link's own
// stack instead of being redirected). `ipv4` in network byte order.
Status AddLocalDeliveryFilter(NetlinkSocket& nl, int ifindex, uint32_t ipv4);

// What a dump shows, for checks and tests.
struct QdiscInfo {
  int ifindex = 0;
  std::string kind;
  uint32_t handle = 0;
  uint32_t parent = 0;
};
struct FilterInfo {
  int ifindex = 0;
  std::string kind;          // "u32"
  uint16_t protocol = 0;     // host order (ETH_P_ALL = 3)
  bool terminal = false;     // u32 selector with TC_U32_TERMINAL
  std::string action;        // first action's kind ("mirred")
  int redirect_ifindex = 0;  // mirred target
  int mirred_eaction = 0;    // TCA_EGRESS_REDIR...
};
Result<std::vector<QdiscInfo>> ListQdiscs(NetlinkSocket& nl);
// Filters under the ingress qdisc of `ifindex`.
Result<std::vector<FilterInfo>> ListIngressFilters(NetlinkSocket& nl, int ifindex);

}  // namespace cask::net
