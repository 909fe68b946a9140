#include "cmd/cask-agent/network.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/veth.h>
#include <sched.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "lib/net/netns_for_test.h"

#include <cstdio>
#include <thread>

namespace cask::agent {
namespace {

net::NetworkSetup Good() {
  net::NetworkSetup r;
  r.interfaces.push_back(net::InterfaceSetup{"eth0", "02:42:0a:58:4d:05", 1450, {{"10.88.77.5", 24}}, ""});
  r.routes.push_back(net::RouteSetup{"", 0, "10.88.77.1", "", "eth0", 0});
  r.routes.push_back(net::RouteSetup{"10.96.0.0", 12, "", "", "eth0", RT_SCOPE_LINK});
  r.neighbours.push_back(net::NeighbourSetup{"10.88.77.9", "02:00:00:00:00:09", "eth0"});
  return r;
}

void ExpectBad(const net::NetworkSetup& r, const std::string& field) {
  auto p = ValidateNetworkRequest(r);
  ASSERT_FALSE(p.ok()) << "accepted; expected an error about " << field;
  EXPECT_EQ(p.error().code(), Code::kInvalidArgument);
  EXPECT_NE(p.error().ToString().find(field), std::string::npos) << p.error().ToString();
}

TEST(ValidateNetwork, AcceptsACniPod) {
  auto p = ValidateNetworkRequest(Good());
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  ASSERT_EQ(p->interfaces.size(), 1u);
  EXPECT_EQ(p->interfaces[0].mtu, 1450u);
  EXPECT_EQ(net::FormatMac(p->interfaces[0].mac), "02:42:0a:58:4d:05");
  ASSERT_EQ(p->routes.size(), 2u);
  EXPECT_FALSE(p->routes[0].route.dst.has_value());
  EXPECT_EQ(p->routes[0].route.family, AF_INET);
  EXPECT_EQ(p->routes[1].route.dst_len, 12);
}

TEST(ValidateNetwork, AcceptsNothing) { EXPECT_TRUE(ValidateNetworkRequest(net::NetworkSetup{}).ok()); }

TEST(ValidateNetwork, RefusesBadInterfaces) {
  auto r = Good(); r.interfaces[0].name = ""; ExpectBad(r, "interfaces[0].name");
  r = Good(); r.interfaces[0].name = "lo"; ExpectBad(r, "interfaces[0].name");
  r = Good(); r.interfaces[0].name = "a-name-longer-than-15"; ExpectBad(r, "interfaces[0].name");
  r = Good(); r.interfaces[0].name = "eth/0"; ExpectBad(r, "interfaces[0].name");
  r = Good(); r.interfaces[0].mac = "01:00:5e:00:00:01"; ExpectBad(r, "interfaces[0].mac");  // multicast
  r = Good(); r.interfaces[0].mac = "00:00:00:00:00:00"; ExpectBad(r, "interfaces[0].mac");
  r = Good(); r.interfaces[0].mac = "zz"; ExpectBad(r, "interfaces[0].mac");
  r = Good(); r.interfaces[0].mtu = 67; ExpectBad(r, "interfaces[0].mtu");
  r = Good(); r.interfaces[0].mtu = 65536; ExpectBad(r, "interfaces[0].mtu");
  r = Good(); r.interfaces[0].mtu = 1000; r.interfaces[0].addresses.push_back({"fd00::5", 64});
  ExpectBad(r, "interfaces[0].mtu");  // IPv6 needs 1280
  r = Good(); r.interfaces[0].addresses[0].second = 33; ExpectBad(r, "interfaces[0].addresses[0].prefix_len");
  r = Good(); r.interfaces[0].addresses[0].first = "10.88.77"; ExpectBad(r, "interfaces[0].addresses[0].address");
  r = Good(); r.interfaces.push_back(r.interfaces[0]); ExpectBad(r, "interfaces[1].name");
  r = Good(); r.interfaces.push_back(r.interfaces[0]); r.interfaces[1].name = "eth1"; ExpectBad(r, "interfaces[1].mac");
}

TEST(ValidateNetwork, RefusesBeyondBounds) {
  auto r = Good();
  for (size_t i = 0; i < kMaxNetAddresses; ++i) r.interfaces[0].addresses.push_back({"10.0.0." + std::to_string(i + 1), 32});
  ExpectBad(r, "interfaces[0].addresses");
  r = Good();
  for (size_t i = 0; i < kMaxNetInterfaces; ++i) r.interfaces.push_back(r.interfaces[0]);
  ExpectBad(r, "interfaces");
  r = Good();
  r.routes.resize(kMaxNetRoutes + 1, r.routes[0]);
  ExpectBad(r, "routes");
  r = Good();
  r.neighbours.resize(kMaxNetNeighbours + 1, r.neighbours[0]);
  ExpectBad(r, "neighbours");
}

TEST(ValidateNetwork, RefusesBadRoutesAndNeighbours) {
  auto r = Good(); r.routes[0].device = "eth9"; ExpectBad(r, "routes[0].device");
  r = Good(); r.routes[0].gateway = ""; ExpectBad(r, "routes[0]");  // default route without gateway
  r = Good(); r.routes[0].gateway = "fd00::1"; r.routes[0].dest = "10.0.0.0"; r.routes[0].dest_prefix_len = 8;
  ExpectBad(r, "routes[0].gateway");  // mixed families
  r = Good(); r.routes[1].dest_prefix_len = 40; ExpectBad(r, "routes[1].dest_prefix_len");
  r = Good(); r.routes[0].dest_prefix_len = 8; ExpectBad(r, "routes[0].dest_prefix_len");  // default with a length
  r = Good(); r.routes[1].scope = 200; ExpectBad(r, "routes[1].scope");
  r = Good(); r.routes[0].scope = RT_SCOPE_LINK; ExpectBad(r, "routes[0].scope");  // via a gateway
  r = Good(); r.neighbours[0].device = "x"; ExpectBad(r, "neighbours[0].device");
  r = Good(); r.neighbours[0].mac = "ff:ff:ff:ff:ff:ff"; ExpectBad(r, "neighbours[0].mac");
  r = Good(); r.neighbours[0].address = "nope"; ExpectBad(r, "neighbours[0].address");
}

TEST(TcpListeners, ParsesProcNetTcp) {
  const char* tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"   // 0.0.0.0:8080
      "   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n"   // 127.0.0.1:53
      "   2: 05004D0A:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1\n"   // 10.77.0.5:443
      "   3: 05004D0A:1F90 0100A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 4 1\n"   // established
      "   4: garbage\n";
  const char* tcp6 =
      "  sl  local_address                         remote_address                        st\n"
      "   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 0\n"  // [::]:9000
      "   1: 00000000000000000000000001000000:2329 00000000000000000000000000000000:0000 0A 0\n"  // [::1]:9001
      "   2: 0000000000000000FFFF00000100007F:232A 00000000000000000000000000000000:0000 0A 0\n";  // ::ffff:127.0.0.1
  std::set<uint16_t> ports;
  ParseTcpListeners(tcp, &ports);
  ParseTcpListeners(tcp6, &ports);
  EXPECT_EQ(ports, (std::set<uint16_t>{443, 8080, 9000}));
}

TEST(TcpListeners, Bounded) {
  std::string text = "header\n";
  for (int i = 1; i <= 100; ++i) {
    char line[128];
    std::snprintf(line, sizeof line, "   %d: 00000000:%04X 00000000:0000 0A 0\n", i, 1000 + i);
    text += line;
  }
  std::set<uint16_t> ports;
  ParseTcpListeners(text, &ports);
  EXPECT_EQ(ports.size(), kMaxListeners);
}

// Apply in a throwaway namespace: a veth end with a random name plays the
// guest NIC; it must come out renamed, up, addressed and routed.
TEST(ApplyNetwork, ConfiguresTheLinkWithThatMac) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  Status result = net::RunInNewNetns([&]() -> Status {
    CASK_ASSIGN_OR_RETURN(net::NetlinkSocket nl, net::NetlinkSocket::Open());
    CASK_TRY(net::AddVeth(nl, net::VethSpec{"ens3", "other", *net::ParseMac("02:42:0a:58:4d:05"), 0, -1}));
    CASK_ASSIGN_OR_RETURN(NetworkPlan plan, ValidateNetworkRequest(Good()));
    CASK_TRY(ApplyNetworkPlan(nl, plan, std::chrono::milliseconds(1000)));
    // Twice: a retried call converges.
    CASK_TRY(ApplyNetworkPlan(nl, plan, std::chrono::milliseconds(1000)));
    CASK_ASSIGN_OR_RETURN(auto links, net::ListLinks(nl));
    int idx = 0;
    for (const auto& l : links) {
      if (l.name != "eth0") continue;
      idx = l.index;
      if (!(l.flags & IFF_UP) || l.mtu != 1450) return Error::Internal("eth0 not up with MTU 1450");
    }
    if (!idx) return Error::Internal("ens3 was not renamed to eth0");
    CASK_ASSIGN_OR_RETURN(auto addrs, net::ListAddresses(nl));
    bool addr = false;
    for (const auto& a : addrs) addr |= a.ifindex == idx && net::FormatIp(a.ip) == "10.88.77.5" && a.prefix_len == 24;
    if (!addr) return Error::Internal("address missing");
    CASK_ASSIGN_OR_RETURN(auto routes, net::ListRoutes(nl));
    bool def = false, svc = false;
    for (const auto& r : routes) {
      def |= !r.dst && r.gateway && net::FormatIp(*r.gateway) == "10.88.77.1" && r.ifindex == idx;
      svc |= r.dst && net::FormatIp(*r.dst) == "10.96.0.0" && r.dst_len == 12 && r.ifindex == idx;
    }
    if (!def || !svc) return Error::Internal("routes missing");
    CASK_ASSIGN_OR_RETURN(auto neigh, net::ListNeighbours(nl));
    bool nb = false;
    for (const auto& n : neigh) nb |= n.ifindex == idx && net::FormatIp(n.ip) == "10.88.77.9" && n.has_mac;
    if (!nb) return Error::Internal("neighbour missing");
    // A MAC that never appears: NOT_FOUND, after the wait.
    auto other = Good();
    other.interfaces[0].mac = "02:00:00:00:00:77";
    CASK_ASSIGN_OR_RETURN(NetworkPlan missing, ValidateNetworkRequest(other));
    Status st = ApplyNetworkPlan(nl, missing, std::chrono::milliseconds(50));
    if (st.ok() || st.error().code() != Code::kNotFound) return Error::Internal("missing MAC not reported");
    return Ok();
  });
  EXPECT_TRUE(result.ok()) << result.error().ToString();
}

// A pool VM's NIC: found by current_mac, given the pod's MAC, configured;
// a retry (the NIC already has the pod's MAC) converges.
TEST(ApplyNetwork, SetsTheMacOfANicFoundByItsCurrentMac) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  Status result = net::RunInNewNetns([&]() -> Status {
    CASK_ASSIGN_OR_RETURN(net::NetlinkSocket nl, net::NetlinkSocket::Open());
    CASK_TRY(net::AddVeth(nl, net::VethSpec{"ens3", "other", *net::ParseMac("02:ca:5c:01:02:03"), 0, -1}));
    auto req = Good();
    req.interfaces[0].current_mac = "02:ca:5c:01:02:03";
    CASK_ASSIGN_OR_RETURN(NetworkPlan plan, ValidateNetworkRequest(req));
    CASK_TRY(ApplyNetworkPlan(nl, plan, std::chrono::milliseconds(1000)));
    CASK_TRY(ApplyNetworkPlan(nl, plan, std::chrono::milliseconds(1000)));
    CASK_ASSIGN_OR_RETURN(auto links, net::ListLinks(nl));
    for (const auto& l : links)
      if (l.name == "eth0") {
        if (net::FormatMac(l.mac) != "02:42:0a:58:4d:05") return Error::Internal("eth0 has MAC " + net::FormatMac(l.mac));
        if (!(l.flags & IFF_UP)) return Error::Internal("eth0 is down");
        return Ok();
      }
    return Error::Internal("ens3 was not renamed to eth0");
  });
  EXPECT_TRUE(result.ok()) << result.error().ToString();
}

TEST(ValidateNetwork, ChecksTheCurrentMac) {
  auto r = Good();
  r.interfaces[0].current_mac = "01:00:5e:00:00:01";
  ExpectBad(r, "interfaces[0].current_mac");
  r = Good();
  r.interfaces.push_back(net::InterfaceSetup{"eth1", "02:42:0a:58:4d:06", 1450, {}, ""});
  r.interfaces[1].current_mac = "02:42:0a:58:4d:05";  // eth0's
  ExpectBad(r, "interfaces[1].current_mac");
  r = Good();
  r.interfaces[0].current_mac = r.interfaces[0].mac;  // the same: nothing to change
  auto p = ValidateNetworkRequest(r);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->interfaces[0].current_mac.has_value());
}

}  // namespace
}  // namespace cask::agent
