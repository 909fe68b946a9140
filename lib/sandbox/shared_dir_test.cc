#include "lib/sandbox/shared_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "lib/base/fs.h"

namespace cask::sandbox {
namespace {

TEST(MountPointsUnderTest, SelectsDeepestFirstAndUnescapes) {
  const std::string info =
      "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
      "100 27 254:0 /run/x/shared /run/x/shared rw - ext4 /dev/vda rw\n"
      "101 100 254:0 /src /run/x/shared/c1/rootfs rw - ext4 /dev/vda rw\n"
      "102 101 0:50 / /run/x/shared/c1/rootfs/proc rw - proc proc rw\n"
      "103 100 254:0 /my\\040dir /run/x/shared/c1/mounts/a\\040b rw - ext4 /dev/vda rw\n"
      "104 27 254:0 / /run/x/shared-other rw - ext4 /dev/vda rw\n"
      "garbage\n";
  auto m = MountPointsUnder(info, "/run/x/shared");
  ASSERT_EQ(m.size(), 4u);
  // Same depth: the later (upper) entry first.
  EXPECT_EQ(m[0], "/run/x/shared/c1/mounts/a b");
  EXPECT_EQ(m[1], "/run/x/shared/c1/rootfs/proc");
  EXPECT_EQ(m[2], "/run/x/shared/c1/rootfs");
  EXPECT_EQ(m[3], "/run/x/shared");
  EXPECT_TRUE(MountPointsUnder(info, "/nonexistent").empty());
}

class SharedDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount)";
    char tmpl[] = "/tmp/cask-shared-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    src_ = root_ + "/src";
    ASSERT_TRUE(MkdirAll(src_ + "/sub").ok());
    ASSERT_TRUE(WriteFile(src_ + "/sub/file", "precious").ok());
    ASSERT_TRUE(WriteFile(root_ + "/single", "one file").ok());
  }
  void TearDown() override {
    if (root_.empty()) return;
    (void)UnmountAllUnder(root_);
    ASSERT_TRUE(RemoveTreeNoMounts(root_).ok());
  }
  std::string root_, src_;
};

TEST_F(SharedDirTest, BindAndTeardownNeverTouchTheSource) {
  auto d = SharedDir::Create(root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  ASSERT_TRUE((*d)->Bind(root_ + "/single", "c1/mounts/0", true).ok());
  auto through = ReadFile(root_ + "/shared/c1/rootfs/sub/file");
  ASSERT_TRUE(through.ok());
  EXPECT_EQ(*through, "precious");
  auto file = ReadFile(root_ + "/shared/c1/mounts/0");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(*file, "one file");
  // Read-only bind refuses writes.
  EXPECT_FALSE(WriteFile(root_ + "/shared/c1/mounts/0", "x").ok());

  auto mounts = LiveMountPointsUnder(root_ + "/shared");
  ASSERT_TRUE(mounts.ok());
  EXPECT_EQ(mounts->size(), 3u);  // self-bind, rootfs, file

  // Removing a tree with mounts in it is refused (same filesystem: a plain
  // rm -rf would descend into the bind and delete the source).
  EXPECT_FALSE(RemoveTreeNoMounts(root_ + "/shared").ok());

  ASSERT_TRUE((*d)->Teardown().ok());
  EXPECT_FALSE(PathExists(root_ + "/shared"));
  auto left = LiveMountPointsUnder(root_);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  auto still = ReadFile(src_ + "/sub/file");
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(*still, "precious");
  EXPECT_TRUE((*d)->Teardown().ok());  // idempotent
}

TEST_F(SharedDirTest, RemoveUndoesOneContainer) {
  auto d = SharedDir::Create(root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  ASSERT_TRUE((*d)->Bind(src_, "c2/rootfs", false).ok());
  ASSERT_TRUE((*d)->Remove("c1").ok());
  EXPECT_FALSE(PathExists(root_ + "/shared/c1"));
  EXPECT_TRUE(PathExists(root_ + "/shared/c2/rootfs/sub/file"));
  EXPECT_TRUE(PathExists(src_ + "/sub/file"));
  EXPECT_TRUE((*d)->Remove("c1").ok());  // missing is fine
}

TEST_F(SharedDirTest, BusyMountIsDetached) {
  auto d = SharedDir::Create(root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  auto busy = Open(root_ + "/shared/c1/rootfs/sub/file", O_RDONLY);  // keeps the mount busy
  ASSERT_TRUE(busy.ok());
  ASSERT_TRUE((*d)->Remove("c1").ok());
  EXPECT_FALSE(PathExists(root_ + "/shared/c1"));
  EXPECT_TRUE(PathExists(src_ + "/sub/file"));
}

TEST_F(SharedDirTest, RejectsEscapingPaths) {
  auto d = SharedDir::Create(root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  EXPECT_EQ((*d)->Bind(src_, "../escape", false).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*d)->Bind(src_, "/abs", false).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*d)->Bind(src_, "a/./b", false).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*d)->Remove("..").error().code(), Code::kInvalidArgument);
  EXPECT_FALSE((*d)->Bind(root_ + "/missing", "c1/rootfs", false).ok());
}

TEST_F(SharedDirTest, DestructorTearsDown) {
  {
    auto d = SharedDir::Create(root_ + "/shared");
    ASSERT_TRUE(d.ok()) << d.error().ToString();
    ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  }
  EXPECT_FALSE(PathExists(root_ + "/shared"));
  EXPECT_TRUE(PathExists(src_ + "/sub/file"));
}

}  // namespace
}  // namespace cask::sandbox
