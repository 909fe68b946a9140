#include "cmd/cask-agent/channel.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "lib/base/fs.h"

namespace cask::agent {
namespace {

TEST(Channel, FindVirtioPortByName) {
  char tmpl[] = "/tmp/cask-vport-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string sys = std::string(tmpl) + "/sys";
  ASSERT_TRUE(MkdirAll(sys + "/vport0p0").ok());
  ASSERT_TRUE(MkdirAll(sys + "/vport0p1").ok());
  ASSERT_TRUE(MkdirAll(sys + "/vport1p1").ok());  // no name file: skipped
  ASSERT_TRUE(WriteFile(sys + "/vport0p0/name", "org.qemu.guest_agent.0\n").ok());
  ASSERT_TRUE(WriteFile(sys + "/vport0p1/name", "cask.agent\n").ok());
  auto path = FindVirtioPort(kSerialPortName, sys, "/dev");
  ASSERT_TRUE(path.ok()) << path.error().ToString();
  EXPECT_EQ(*path, "/dev/vport0p1");
  auto missing = FindVirtioPort("other", sys, "/dev");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  ASSERT_TRUE(RemoveAll(tmpl).ok());
}

}  // namespace
}  // namespace cask::agent
