#include "cmd/cask-agent/init.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "lib/base/fs.h"

namespace cask::agent {
namespace {

TEST(Init, EarlyMountsIncludeDevtmpfsAndCgroup2InOrder) {
  auto mounts = EarlyMounts();
  std::vector<std::string> targets;
  for (const auto& m : mounts) targets.push_back(m.target);
  EXPECT_EQ(targets, (std::vector<std::string>{"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run",
                                               "/sys/fs/cgroup"}));
  EXPECT_EQ(mounts[2].fstype, "devtmpfs");
  EXPECT_EQ(mounts[6].fstype, "cgroup2");
}

// A fake cgroup directory: the controllers file lists what is available;
// only the wanted and available ones are written.
TEST(Init, EnableControllersWritesAvailableOnes) {
  char tmpl[] = "/tmp/cask-cg-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(WriteFile(dir + "/cgroup.controllers", "cpuset cpu io memory\n").ok());
  ASSERT_TRUE(WriteFile(dir + "/cgroup.subtree_control", "").ok());
  auto enabled = EnableControllers(dir, {"cpu", "memory", "pids", "io"});
  ASSERT_TRUE(enabled.ok()) << enabled.error().ToString();
  EXPECT_EQ(*enabled, (std::vector<std::string>{"cpu", "memory", "io"}));
  auto written = ReadFile(dir + "/cgroup.subtree_control");
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(*written, "+cpu +memory +io");
  auto missing = EnableControllers(dir + "/nope", {"cpu"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  ASSERT_TRUE(RemoveAll(dir).ok());
}

}  // namespace
}  // namespace cask::agent
