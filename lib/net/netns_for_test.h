// Test support for lib/net and the code above it (the agent's network
// setup): throwaway network namespaces and veth pairs, so a test never
// touches the host's own interfaces. Header-only; needs root
// (CAP_SYS_ADMIN, CAP_NET_ADMIN). Not for production code.
#pragma once

#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/veth.h>

#include <cerrno>
#include <optional>
#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/net/netlink.h"
#include "lib/net/netns.h"
#include "lib/net/rtnl.h"

namespace cask::net {

// A network namespace made for a test, held by an fd; path() names it for
// OpenNetns.
struct TestNetns {
  UniqueFd fd;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd.get()); }
};

// A new network namespace, made by unshare on a thread of its own (the
// caller's namespace stays as it is). With `lo_up`, its loopback is up.
inline Result<TestNetns> NewTestNetns(bool lo_up = false) {
  Result<TestNetns> out = Error::Internal("unset");
  Status st = RunInNewNetns([&]() -> Status {
    if (lo_up) {
      CASK_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
      CASK_ASSIGN_OR_RETURN(std::vector<Link> links, ListLinks(nl));
      int lo = 0;
      for (const auto& l : links)
        if (l.name == "lo") lo = l.index;
      if (lo == 0) return Error::Internal("new network namespace has no lo");
      CASK_TRY(ChangeLink(nl, lo, LinkChange{true, {}, {}}));
    }
    int fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error::Sys(errno, "open /proc/thread-self/ns/net");
    out = TestNetns{UniqueFd(fd)};
    return Ok();
  });
  if (!st.ok()) return std::move(st).error();
  return out;
}

// ip link add NAME [address MAC] [mtu MTU] type veth peer name PEER
// [mtu MTU] [netns PEER_NETNS_FD], in the namespace of `nl`.
struct VethSpec {
  std::string name, peer_name;
  std::optional<Mac> mac;  // of `name`; none: the kernel picks one
  uint32_t mtu = 0;        // of both ends; 0: the default
  int peer_netns_fd = -1;  // the peer's namespace; -1: the same as `name`
};
inline Status AddVeth(NetlinkSocket& nl, const VethSpec& v) {
  NlMessage m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  m.PutHeader(ifinfomsg{});
  m.PutString(IFLA_IFNAME, v.name);
  if (v.mac) m.PutAttr(IFLA_ADDRESS, v.mac->data(), v.mac->size());
  if (v.mtu) m.PutU32(IFLA_MTU, v.mtu);
  size_t info = m.BeginNest(IFLA_LINKINFO);
  m.PutString(IFLA_INFO_KIND, "veth");
  size_t data = m.BeginNest(IFLA_INFO_DATA);
  size_t peer = m.BeginNest(VETH_INFO_PEER);
  // The peer's ifinfomsg sits directly in the attribute.
  m.PutHeader(ifinfomsg{});
  m.PutString(IFLA_IFNAME, v.peer_name);
  if (v.mtu) m.PutU32(IFLA_MTU, v.mtu);
  if (v.peer_netns_fd >= 0) m.PutU32(IFLA_NET_NS_FD, static_cast<uint32_t>(v.peer_netns_fd));
  m.EndNest(peer);
  m.EndNest(data);
  m.EndNest(info);
  return nl.Request(m, "add veth " + v.name);
}

}  // namespace cask::net
