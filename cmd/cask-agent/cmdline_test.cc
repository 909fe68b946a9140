#include "cmd/cask-agent/cmdline.h"

#include <gtest/gtest.h>

namespace cask::agent {
namespace {

TEST(Cmdline, SplitHonoursQuotes) {
  auto parts = SplitCmdline("console=ttyS0  panic=-1 a=\"b c\" quiet\n");
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[0], "console=ttyS0");
  EXPECT_EQ(parts[2], "a=b c");
  EXPECT_EQ(parts[3], "quiet");
}

TEST(Cmdline, Defaults) {
  BootOptions o = ParseBootOptions("console=ttyS0 quiet");
  EXPECT_EQ(o.channel, ChannelKind::kSerial);
  EXPECT_FALSE(o.debug);
  EXPECT_TRUE(o.warnings.empty());
}

TEST(Cmdline, ChannelAndDebug) {
  BootOptions o = ParseBootOptions("console=ttyS0 cask.channel=vsock cask.debug=1\n");
  EXPECT_EQ(o.channel, ChannelKind::kVsock);
  EXPECT_TRUE(o.debug);
  EXPECT_TRUE(o.warnings.empty());
  o = ParseBootOptions("cask.channel=serial cask.debug=0");
  EXPECT_EQ(o.channel, ChannelKind::kSerial);
  EXPECT_FALSE(o.debug);
}

TEST(Cmdline, BadValuesWarnAndKeepDefaults) {
  BootOptions o = ParseBootOptions("cask.channel=tcp cask.debug=maybe cask.colour=red");
  EXPECT_EQ(o.channel, ChannelKind::kSerial);
  EXPECT_FALSE(o.debug);
  ASSERT_EQ(o.warnings.size(), 3u);
  EXPECT_NE(o.warnings[0].find("tcp"), std::string::npos);
  EXPECT_NE(o.warnings[1].find("maybe"), std::string::npos);
  EXPECT_NE(o.warnings[2].find("cask.colour"), std::string::npos);
}

}  // namespace
}  // namespace cask::agent
