// Runs in throwaway network namespaces made by the test (unshare on a
// thread of its own); the host's own interfaces are never touched. Needs
// root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and /dev/net/tun.
#include "lib/net/pod_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/neighbour.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <linux/veth.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "lib/net/netns.h"
#include "lib/net/netns_for_test.h"
#include "lib/net/rtnl.h"
#include "lib/net/tap.h"
#include "lib/net/tc.h"

namespace cask::net {
namespace {

int IndexOf(NetlinkSocket& nl, const std::string& name) {
  auto links = ListLinks(nl);
  if (!links.ok()) return 0;
  for (const auto& l : *links)
    if (l.name == name) return l.index;
  return 0;
}

class PodNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "needs /dev/net/tun";
    auto pod = NewTestNetns();
    ASSERT_TRUE(pod.ok()) << pod.error().ToString();
    pod_ = std::move(*pod);
    auto peer = NewTestNetns();
    ASSERT_TRUE(peer.ok()) << peer.error().ToString();
    peer_ = std::move(*peer);
  }

  // The pod side as CNI leaves it: eth0 10.211.0.2/24 (MTU 1400), default
  // route via 10.211.0.1, one permanent neighbour; the peer answers on
  // 10.211.0.1.
  void MakeCniLikeVeth() {
    Status st = RunInNetns(pod_.fd.get(), [&]() -> Status {
      CASK_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
      CASK_TRY(AddVeth(nl, VethSpec{"eth0", "peer0", std::nullopt, 1400, peer_.fd.get()}));
      int eth0 = IndexOf(nl, "eth0");
      int lo = IndexOf(nl, "lo");
      CASK_TRY(ChangeLink(nl, lo, LinkChange{true, {}, {}}));
      CASK_TRY(ChangeLink(nl, eth0, LinkChange{true, {}, {}}));
      CASK_TRY(AddAddress(nl, Address{eth0, *ParseIp("10.211.0.2"), 24, 0}));
      Route def;
      def.family = AF_INET;
      def.ifindex = eth0;
      def.gateway = *ParseIp("10.211.0.1");
      CASK_TRY(AddRoute(nl, def));
      Neighbour n;
      n.ifindex = eth0;
      n.ip = *ParseIp("10.211.0.9");
      n.mac = *ParseMac("02:00:00:00:00:09");
      n.has_mac = true;
      return AddNeighbour(nl, n);
    });
    ASSERT_TRUE(st.ok()) << st.error().ToString();
    st = RunInNetns(peer_.fd.get(), [&]() -> Status {
      CASK_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
      int p = IndexOf(nl, "peer0");
      CASK_TRY(ChangeLink(nl, p, LinkChange{true, {}, {}}));
      return AddAddress(nl, Address{p, *ParseIp("10.211.0.1"), 24, 0});
    });
    ASSERT_TRUE(st.ok()) << st.error().ToString();
  }

  // Runs `fn` with a netlink socket in the pod namespace.
  void InPod(const std::function<void(NetlinkSocket&)>& fn) {
    Status st = RunInNetns(pod_.fd.get(), [&]() -> Status {
      CASK_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
      fn(nl);
      return Ok();
    });
    ASSERT_TRUE(st.ok()) << st.error().ToString();
  }

  TestNetns pod_, peer_;
};

TEST_F(PodNetworkTest, ReadsInterfaceAndRedirectsBothWays) {
  MakeCniLikeVeth();
  auto pn = PodNetwork::Create(pod_.path());
  ASSERT_TRUE(pn.ok()) << pn.error().ToString();
  ASSERT_EQ((*pn)->interfaces().size(), 1u);
  const PodInterface& pi = (*pn)->interfaces()[0];
  EXPECT_EQ(pi.name, "eth0");
  EXPECT_EQ(pi.mtu, 1400u);
  EXPECT_EQ(pi.tap_name, "tap0_cask");
  EXPECT_TRUE(pi.tap_fd.valid());
  ASSERT_EQ(pi.addresses.size(), 1u);
  EXPECT_EQ(FormatIp(pi.addresses[0].ip), "10.211.0.2");
  EXPECT_EQ(pi.addresses[0].prefix_len, 24);
  // The default route (not the kernel's subnet route) and the permanent
  // neighbour.
  ASSERT_EQ((*pn)->routes().size(), 1u);
  EXPECT_FALSE((*pn)->routes()[0].route.dst.has_value());
  EXPECT_EQ(FormatIp(*(*pn)->routes()[0].route.gateway), "10.211.0.1");
  EXPECT_EQ((*pn)->routes()[0].device, "eth0");
  ASSERT_EQ((*pn)->neighbours().size(), 1u);
  EXPECT_EQ(FormatMac((*pn)->neighbours()[0].neighbour.mac), "02:00:00:00:00:09");

  InPod([&](NetlinkSocket& nl) {
    auto links = ListLinks(nl);
    ASSERT_TRUE(links.ok());
    bool tap_ok = false;
    for (const auto& l : *links)
      if (l.name == "tap0_cask") tap_ok = (l.flags & IFF_UP) && l.mtu == 1400 && l.kind == "tun";
    EXPECT_TRUE(tap_ok);
    auto qd = ListQdiscs(nl);
    ASSERT_TRUE(qd.ok());
    int ingress = 0;
    for (const auto& q : *qd)
      if (q.kind == "ingress" && (q.ifindex == pi.ifindex || q.ifindex == pi.tap_ifindex)) ++ingress;
    EXPECT_EQ(ingress, 2);
    for (auto [from, to] : {std::pair{pi.ifindex, pi.tap_ifindex}, std::pair{pi.tap_ifindex, pi.ifindex}}) {
      auto f = ListIngressFilters(nl, from);
      ASSERT_TRUE(f.ok()) << f.error().ToString();
      // The TAP also has the host link's local-delivery filter.
      ASSERT_EQ(f->size(), from == pi.tap_ifindex ? 2u : 1u);
      int redirects = 0, local = 0;
      for (const FilterInfo& fi : *f) {
        EXPECT_EQ(fi.kind, "u32");
        EXPECT_TRUE(fi.terminal);
        if (fi.action == "mirred") {
          ++redirects;
          EXPECT_EQ(fi.protocol, ETH_P_ALL);
          EXPECT_EQ(fi.redirect_ifindex, to);
          EXPECT_EQ(fi.mirred_eaction, TCA_EGRESS_REDIR);
        } else {
          ++local;
          EXPECT_EQ(fi.protocol, ETH_P_IP);
          EXPECT_EQ(fi.action, "");
        }
      }
      EXPECT_EQ(redirects, 1);
      EXPECT_EQ(local, from == pi.tap_ifindex ? 1 : 0);
    }
  });

  // Traffic: an ARP request written into the TAP (as the guest would send
  // it, with the veth's MAC) leaves through the veth, reaches the peer,
  // and the peer's reply comes back through the veth into the TAP.
  uint8_t frame[10 + 42] = {};  // virtio_net_hdr (zero) + Ethernet + ARP
  uint8_t* eth = frame + 10;
  std::memset(eth, 0xff, 6);
  std::memcpy(eth + 6, pi.mac.data(), 6);
  eth[12] = 0x08; eth[13] = 0x06;
  uint8_t* arp = eth + 14;
  const uint8_t arp_hdr[] = {0, 1, 8, 0, 6, 4, 0, 1};
  std::memcpy(arp, arp_hdr, sizeof arp_hdr);
  std::memcpy(arp + 8, pi.mac.data(), 6);
  const uint8_t sip[] = {10, 211, 0, 2}, tip[] = {10, 211, 0, 1};
  std::memcpy(arp + 14, sip, 4);
  std::memcpy(arp + 24, tip, 4);
  ASSERT_EQ(::write(pi.tap_fd.get(), frame, sizeof frame), static_cast<ssize_t>(sizeof frame));
  bool got_reply = false;
  for (int i = 0; i < 100 && !got_reply; ++i) {
    pollfd p{pi.tap_fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    uint8_t buf[2048];
    ssize_t n = ::read(pi.tap_fd.get(), buf, sizeof buf);
    if (n < 10 + 42) continue;
    const uint8_t* e = buf + 10;
    const uint8_t* a = e + 14;
    if (e[12] == 0x08 && e[13] == 0x06 && a[7] == 2 && std::memcmp(a + 14, tip, 4) == 0 &&
        std::memcmp(e, pi.mac.data(), 6) == 0)
      got_reply = true;
  }
  EXPECT_TRUE(got_reply) << "no ARP reply from the peer came back through the TAP";

  // The host link: an ICMP echo request from the guest's link address to
  // the TAP's is answered by the pod netns' own stack (not redirected to
  // the veth), straight back into the TAP, to the guest's MAC.
  ASSERT_TRUE((*pn)->host_link().has_value());
  EXPECT_EQ((*pn)->host_link()->device, "eth0");
  EXPECT_EQ((*pn)->host_link()->host_mac, pi.tap_mac);
  uint8_t ping[10 + 14 + 20 + 8] = {};
  uint8_t* pe = ping + 10;
  std::memcpy(pe, pi.tap_mac.data(), 6);
  std::memcpy(pe + 6, pi.mac.data(), 6);
  pe[12] = 0x08; pe[13] = 0x00;
  uint8_t* ip = pe + 14;
  const uint8_t iphdr[] = {0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 169, 254, 77, 2, 169, 254, 77, 1};
  std::memcpy(ip, iphdr, sizeof iphdr);
  auto csum = [](const uint8_t* p, size_t n) {
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
  };
  uint16_t c = csum(ip, 20);
  ip[10] = c >> 8; ip[11] = c & 0xff;
  uint8_t* icmp = ip + 20;
  icmp[0] = 8;  // echo request
  icmp[4] = 0x42; icmp[7] = 1;
  c = csum(icmp, 8);
  icmp[2] = c >> 8; icmp[3] = c & 0xff;
  ASSERT_EQ(::write(pi.tap_fd.get(), ping, sizeof ping), static_cast<ssize_t>(sizeof ping));
  bool got_echo = false;
  for (int i = 0; i < 100 && !got_echo; ++i) {
    pollfd p{pi.tap_fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    uint8_t buf[2048];
    ssize_t n = ::read(pi.tap_fd.get(), buf, sizeof buf);
    if (n < 10 + 14 + 28) continue;
    const uint8_t* e = buf + 10;
    const uint8_t* rip = e + 14;
    if (e[12] == 0x08 && e[13] == 0x00 && rip[9] == 1 && rip[20] == 0 && std::memcmp(e, pi.mac.data(), 6) == 0 &&
        rip[16] == 169 && rip[19] == 2)
      got_echo = true;
  }
  EXPECT_TRUE(got_echo) << "no echo reply from the host link address";

  int veth = pi.ifindex;
  ASSERT_TRUE((*pn)->Close().ok());
  EXPECT_TRUE((*pn)->Close().ok());  // idempotent
  InPod([&](NetlinkSocket& nl) {
    auto links = ListLinks(nl);
    ASSERT_TRUE(links.ok());
    bool veth_left = false;
    for (const auto& l : *links) {
      EXPECT_NE(l.kind, "tun") << l.name << " left behind";
      if (l.index == veth) veth_left = (l.flags & IFF_UP) && l.mtu == 1400;
    }
    EXPECT_TRUE(veth_left) << "the veth must stay as CNI made it";
    auto qd = ListQdiscs(nl);
    ASSERT_TRUE(qd.ok());
    for (const auto& q : *qd) EXPECT_NE(q.kind, "ingress") << "qdisc left on link " << q.ifindex;
    auto addrs = ListAddresses(nl);
    ASSERT_TRUE(addrs.ok());
    bool addr_left = false;
    for (const auto& a : *addrs) addr_left |= a.ifindex == veth && FormatIp(a.ip) == "10.211.0.2";
    EXPECT_TRUE(addr_left);
  });
}

TEST_F(PodNetworkTest, DestructorTearsDown) {
  MakeCniLikeVeth();
  {
    auto pn = PodNetwork::Create(pod_.path());
    ASSERT_TRUE(pn.ok()) << pn.error().ToString();
  }
  InPod([&](NetlinkSocket& nl) {
    auto links = ListLinks(nl);
    ASSERT_TRUE(links.ok());
    for (const auto& l : *links) EXPECT_NE(l.kind, "tun");
    auto qd = ListQdiscs(nl);
    ASSERT_TRUE(qd.ok());
    for (const auto& q : *qd) EXPECT_NE(q.kind, "ingress");
  });
}

TEST_F(PodNetworkTest, CloseAfterTheVethIsGoneIsNotAnError) {
  MakeCniLikeVeth();
  auto pn = PodNetwork::Create(pod_.path());
  ASSERT_TRUE(pn.ok()) << pn.error().ToString();
  // CNI DEL removes the veth before the runtime tears down.
  InPod([&](NetlinkSocket& nl) { ASSERT_TRUE(DeleteLink(nl, IndexOf(nl, "eth0")).ok()); });
  auto st = (*pn)->Close();
  EXPECT_TRUE(st.ok()) << st.error().ToString();
  InPod([&](NetlinkSocket& nl) {
    auto links = ListLinks(nl);
    ASSERT_TRUE(links.ok());
    for (const auto& l : *links) EXPECT_NE(l.kind, "tun");
  });
}

TEST_F(PodNetworkTest, NamespaceWithoutAddressesGivesNoInterfaces) {
  auto pn = PodNetwork::Create(pod_.path());
  ASSERT_TRUE(pn.ok()) << pn.error().ToString();
  EXPECT_TRUE((*pn)->interfaces().empty());
  EXPECT_TRUE((*pn)->Close().ok());
}

TEST_F(PodNetworkTest, ExistingTapNameFailsAndLeavesNothing) {
  MakeCniLikeVeth();
  // Something else already holds tap0_cask in the namespace.
  UniqueFd squatter;
  Status st = RunInNetns(pod_.fd.get(), [&]() -> Status {
    CASK_ASSIGN_OR_RETURN(squatter, CreateTap("tap0_cask"));
    return Ok();
  });
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  auto pn = PodNetwork::Create(pod_.path());
  ASSERT_FALSE(pn.ok());
  EXPECT_NE(pn.error().ToString().find("tap0_cask"), std::string::npos) << pn.error().ToString();
  InPod([&](NetlinkSocket& nl) {
    auto qd = ListQdiscs(nl);
    ASSERT_TRUE(qd.ok());
    for (const auto& q : *qd) EXPECT_NE(q.kind, "ingress");
  });
}

TEST(PodNetworkPath, RefusesWhatIsNotANetworkNamespace) {
  auto missing = PodNetwork::Create("/nonexistent/netns");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  auto file = PodNetwork::Create("/proc/self/ns/pid");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code(), Code::kInvalidArgument);
  auto plain = PodNetwork::Create("/proc/self/status");
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().code(), Code::kInvalidArgument);
}


// A ready TAP (a pool VM's, made in a holding namespace) is moved into the
// pod namespace, renamed, wired like a TAP made here, and deleted by Close.
TEST_F(PodNetworkTest, AdoptsAReadyTapFromAnotherNamespace) {
  MakeCniLikeVeth();
  auto holding = NewTestNetns();
  ASSERT_TRUE(holding.ok()) << holding.error().ToString();
  Result<UniqueFd> tap = Error::Internal("unset");
  ASSERT_TRUE(RunInNetns(holding->fd.get(), [&]() -> Status {
                tap = CreateTap("cpool-test");
                return Ok();
              }).ok());
  ASSERT_TRUE(tap.ok()) << tap.error().ToString();
  int fd_number = tap->get();
  ReadyTap r{std::move(*tap), UniqueFd(::dup(holding->fd.get())), "cpool-test", *ParseMac("02:ca:5c:00:00:01")};
  auto pn = PodNetwork::Create(pod_.path(), std::move(r));
  ASSERT_TRUE(pn.ok()) << pn.error().ToString();
  ASSERT_EQ((*pn)->interfaces().size(), 1u);
  const PodInterface& pi = (*pn)->interfaces()[0];
  EXPECT_EQ(pi.tap_fd.get(), fd_number);  // the same fd: the device QEMU uses
  EXPECT_EQ(pi.tap_name, "tap0_cask");
  ASSERT_TRUE(pi.guest_mac_now.has_value());
  EXPECT_EQ(FormatMac(*pi.guest_mac_now), "02:ca:5c:00:00:01");
  InPod([&](NetlinkSocket& nl) {
    auto links = ListLinks(nl);
    ASSERT_TRUE(links.ok());
    bool up = false;
    for (const auto& l : *links)
      if (l.name == "tap0_cask") up = (l.flags & IFF_UP) && l.mtu == 1400 && l.kind == "tun" && l.index == pi.tap_ifindex;
    EXPECT_TRUE(up);
    auto f = ListIngressFilters(nl, pi.ifindex);
    ASSERT_TRUE(f.ok());
    ASSERT_EQ(f->size(), 1u);
    EXPECT_EQ((*f)[0].redirect_ifindex, pi.tap_ifindex);
  });
  ASSERT_TRUE(RunInNetns(holding->fd.get(), [&]() -> Status {
                CASK_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
                EXPECT_EQ(IndexOf(nl, "cpool-test"), 0) << "the TAP is still in the holding namespace";
                return Ok();
              }).ok());
  ASSERT_TRUE((*pn)->Close().ok());
  InPod([&](NetlinkSocket& nl) { EXPECT_EQ(IndexOf(nl, "tap0_cask"), 0); });
}

// A pod with two interfaces cannot use a one-NIC ready VM: refused before
// the TAP moves, which stays where it was.
TEST_F(PodNetworkTest, ReadyTapNeedsExactlyOneInterface) {
  MakeCniLikeVeth();
  InPod([&](NetlinkSocket& nl) {
    ASSERT_TRUE(AddVeth(nl, VethSpec{"eth1", "peer1", std::nullopt, 0, -1}).ok());
    int eth1 = IndexOf(nl, "eth1");
    ASSERT_TRUE(ChangeLink(nl, eth1, LinkChange{true, {}, {}}).ok());
    ASSERT_TRUE(AddAddress(nl, Address{eth1, *ParseIp("10.212.0.2"), 24, 0}).ok());
  });
  auto holding = NewTestNetns();
  ASSERT_TRUE(holding.ok());
  UniqueFd keep;
  ASSERT_TRUE(RunInNetns(holding->fd.get(), [&]() -> Status {
                CASK_ASSIGN_OR_RETURN(keep, CreateTap("cpool-test"));
                return Ok();
              }).ok());
  ReadyTap r{UniqueFd(::dup(keep.get())), UniqueFd(::dup(holding->fd.get())), "cpool-test", *ParseMac("02:ca:5c:00:00:01")};
  auto pn = PodNetwork::Create(pod_.path(), std::move(r));
  ASSERT_FALSE(pn.ok());
  EXPECT_EQ(pn.error().code(), Code::kFailedPrecondition) << pn.error().ToString();
  ASSERT_TRUE(RunInNetns(holding->fd.get(), [&]() -> Status {
                CASK_ASSIGN_OR_RETURN(NetlinkSocket nl, NetlinkSocket::Open());
                EXPECT_NE(IndexOf(nl, "cpool-test"), 0);
                return Ok();
              }).ok());
  InPod([&](NetlinkSocket& nl) { EXPECT_EQ(IndexOf(nl, "tap0_cask"), 0); });
}

}  // namespace
}  // namespace cask::net
