#include "lib/net/rtnl.h"

#include <linux/if_link.h>

#include <gtest/gtest.h>

#include <cstring>

#include "lib/net/netlink.h"

namespace cask::net {
namespace {

TEST(Mac, RoundTrip) {
  auto m = ParseMac("02:aB:00:ff:10:9c");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(FormatMac(*m), "02:ab:00:ff:10:9c");
}

TEST(Mac, RefusesMalformed) {
  for (const char* bad : {"", "02:ab:00:ff:10", "02:ab:00:ff:10:9c:00", "02-ab-00-ff-10-9c", "0g:ab:00:ff:10:9c"}) {
    auto m = ParseMac(bad);
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.error().code(), Code::kInvalidArgument);
  }
}

TEST(Ip, ParsesBothFamilies) {
  auto v4 = ParseIp("10.1.2.3");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(FormatIp(*v4), "10.1.2.3");
  auto v6 = ParseIp("fd00::1");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(FormatIp(*v6), "fd00::1");
  EXPECT_FALSE(ParseIp("10.1.2").ok());
  EXPECT_FALSE(ParseIp("10.1.2.3/24").ok());
}

TEST(NlMessage, NestsAndParsesBack) {
  NlMessage m(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  m.PutHeader(ifi);
  m.PutU32(IFLA_MTU, 1400);
  size_t n = m.BeginNest(IFLA_LINKINFO);
  m.PutString(IFLA_INFO_KIND, "veth");
  m.EndNest(n);
  m.PutString(IFLA_IFNAME, "eth0");
  EXPECT_EQ(m.header()->nlmsg_len, m.bytes().size());
  NlAttrs a = AttrsAfter<ifinfomsg>(m.header(), IFLA_MAX);
  EXPECT_EQ(a.U32(IFLA_MTU), 1400u);
  EXPECT_EQ(a.String(IFLA_IFNAME), "eth0");
  ASSERT_TRUE(a.Has(IFLA_LINKINFO));
  EXPECT_EQ(a.Nested(IFLA_LINKINFO, IFLA_INFO_MAX).String(IFLA_INFO_KIND), "veth");
  // A nest that is not there has no attributes.
  EXPECT_FALSE(a.Nested(IFLA_AF_SPEC, IFLA_INFO_MAX).Has(IFLA_INFO_KIND));
  EXPECT_EQ(a.Nested(IFLA_AF_SPEC, IFLA_INFO_MAX).String(IFLA_INFO_KIND), "");
}

TEST(NlAttrs, StopsAtTruncatedAttribute) {
  // rta_len claims more than the buffer holds: ignored, no overread.
  uint8_t buf[8] = {};
  rtattr a{};
  a.rta_len = 64;
  a.rta_type = 1;
  std::memcpy(buf, &a, sizeof a);
  NlAttrs parsed(buf, sizeof buf, 4);
  EXPECT_FALSE(parsed.Has(1));
  EXPECT_EQ(parsed.U32(1), 0u);
}

}  // namespace
}  // namespace cask::net
