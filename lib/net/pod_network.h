// PodNetwork: the host side of a pod's network, Kata's "tc filter" model.
//
// The pod's network namespace (made by CNI) holds a veth with the pod's
// address. Create() enters that namespace (on a thread of its own, see
// netns.h), reads every interface with addresses (loopback and links
// without addresses are skipped) with its MAC, MTU, addresses, the routes
// and the permanent neighbours, and for each interface makes a TAP
// ("tap<i>_cask") with the veth's MTU, an ingress qdisc on both, and two
// u32 match-all filters whose mirred action redirects every frame from
// the veth out of the TAP and from the TAP out of the veth. The VM's NIC
// is the TAP (its fd goes to QEMU) with the veth's MAC, and the guest
// configures the addresses and routes read here, so the pod's address
// lives in the guest. The veth keeps its address on the host side.
//
// Ownership: a PodNetwork owns the TAP fds, the TAPs and the qdiscs and
// filters it added; the veth and its addresses stay as CNI made them.
// Close() (also run by the destructor) deletes the veth's ingress qdisc
// (its filter goes with it), then each TAP (its qdisc and filter go with
// it), and closes the fds; it is idempotent, and what is already gone
// (CNI deleted the namespace first) is not an error. A failed Create()
// leaves nothing behind.
//
// Thread safety: none; one owner calls it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/net/netlink.h"
#include "lib/net/rtnl.h"

namespace cask::net {

// Bounds on what a namespace may hand over (the guest API caps the same).
inline constexpr size_t kMaxInterfaces = 8;
inline constexpr size_t kMaxAddressesPerInterface = 16;
inline constexpr size_t kMaxRoutes = 64;
inline constexpr size_t kMaxNeighbours = 64;

struct PodInterface {
  std::string name;  // the veth's name; the guest NIC gets the same
  int ifindex = 0;   // in the pod namespace
  Mac mac{};
  uint32_t mtu = 0;
  std::vector<Address> addresses;  // IPv6 link-local ones left out (the guest makes its own)

  std::string tap_name;
  int tap_ifindex = 0;
  Mac tap_mac{};
  UniqueFd tap_fd;  // the fd QEMU gets; owned here
  // An adopted ready TAP (ReadyTap): the MAC the guest NIC has now, which
  // the guest is to change to `mac` before configuring it.
  std::optional<Mac> guest_mac_now;
};

// A TAP that a running VM already uses (a pool VM's), in another network
// namespace (the pool's holding one), for Create to adopt as the pod's
// single interface's TAP instead of making one. The guest NIC behind it
// has `guest_mac`.
struct ReadyTap {
  UniqueFd fd;     // a /dev/net/tun fd attached to the TAP (TUNGETIFF must name `name`)
  UniqueFd netns;  // the namespace the TAP is in now
  std::string name;
  Mac guest_mac{};
};

// The host link: a private IPv4 /30 between the pod netns on the host and
// the guest, over the first interface's TAP, which never reaches the pod's
// network. The TAP gets kHostLinkHost; the guest's NIC gets
// kHostLinkGuest (given to it with the pod's own addresses), each side a
// permanent neighbour entry for the other, and a u32 filter before the
// redirect on the TAP delivers IPv4 for kHostLinkHost to the pod netns'
// own stack. The port forwarder (port_forwarder.h) connects through it.
inline constexpr const char* kHostLinkHost = "169.254.77.1";
inline constexpr const char* kHostLinkGuest = "169.254.77.2";
inline constexpr uint8_t kHostLinkPrefix = 30;
struct HostLink {
  std::string device;  // the PodInterface name (guest side)
  Mac host_mac{};      // the TAP's
};

// A route to give the guest: any main-table unicast route of a pod
// interface except those the kernel derives from an address (proto
// kernel), and except IPv6 link-local ones.
struct PodRoute {
  Route route;
  std::string device;  // the PodInterface name
};

struct PodNeighbour {
  Neighbour neighbour;
  std::string device;
};

class PodNetwork {
 public:
  // INVALID_ARGUMENT when netns_path is not a network namespace, NOT_FOUND
  // when it does not exist; RESOURCE_EXHAUSTED beyond the bounds above.
  // A namespace without any interface with an address is a PodNetwork
  // with no interfaces (the VM gets no NIC).
  //
  // With `ready`: the pod must have exactly one interface with addresses
  // (FAILED_PRECONDITION otherwise, checked before anything moves); the
  // ready TAP is moved into the pod namespace (RTM_NEWLINK with
  // IFLA_NET_NS_FD: QEMU keeps using its fd), renamed tap0_cask and wired
  // exactly as a TAP made here; its interface's guest_mac_now is set.
  // From the move on it is this PodNetwork's (Close deletes it); a failure
  // before the move leaves it where it was (its fd is closed either way).
  static Result<std::unique_ptr<PodNetwork>> Create(const std::string& netns_path,
                                                    std::optional<ReadyTap> ready = std::nullopt);
  ~PodNetwork();
  PodNetwork(const PodNetwork&) = delete;
  PodNetwork& operator=(const PodNetwork&) = delete;

  const std::string& netns_path() const { return netns_path_; }
  const std::vector<PodInterface>& interfaces() const { return interfaces_; }
  const std::vector<PodRoute>& routes() const { return routes_; }
  const std::vector<PodNeighbour>& neighbours() const { return neighbours_; }
  // Set when there is a first interface and none of the pod's addresses
  // is in 169.254.77.0/30.
  const std::optional<HostLink>& host_link() const { return host_link_; }
  // The namespace's file, open (for running a forwarder there).
  int netns_fd() const { return netns_fd_.get(); }

  // Removes the TAPs, qdiscs and filters; closes the TAP fds. Idempotent;
  // the first call's result is returned by later ones.
  Status Close();

 private:
  PodNetwork() = default;
  Status Setup();
  Status AdoptReadyTap(PodInterface& pi);

  std::string netns_path_;
  UniqueFd netns_fd_;
  std::unique_ptr<NetlinkSocket> nl_;  // opened inside the pod namespace
  std::vector<PodInterface> interfaces_;
  std::vector<PodRoute> routes_;
  std::vector<PodNeighbour> neighbours_;
  std::optional<HostLink> host_link_;
  std::optional<ReadyTap> ready_;
  std::vector<int> qdisc_links_;  // links we added an ingress qdisc to
  bool closed_ = false;
  Status close_result_;
};

}  // namespace cask::net
