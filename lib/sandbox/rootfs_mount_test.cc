#include "lib/sandbox/rootfs_mount.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include "lib/base/fs.h"

namespace cask::sandbox {
namespace {

TEST(RootfsMount, OwnerMountsAndUnmounts) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  char tmpl[] = "/tmp/cask-rootfs-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(MkdirAll(dir + "/src").ok());
  ASSERT_TRUE(MkdirAll(dir + "/rootfs").ok());
  ASSERT_TRUE(WriteFile(dir + "/src/hello", "hi").ok());
  {
    auto m = RootfsMount::Mount({{"bind", dir + "/src", {"ro", "rbind"}}}, dir + "/rootfs");
    ASSERT_TRUE(m.ok()) << m.error().ToString();
    EXPECT_TRUE(m->mounted());
    auto content = ReadFile(dir + "/rootfs/hello");
    ASSERT_TRUE(content.ok());
    EXPECT_EQ(*content, "hi");
    EXPECT_FALSE(WriteFile(dir + "/rootfs/x", "y").ok());  // read-only as asked
    RootfsMount moved = std::move(*m);
    EXPECT_FALSE(m->mounted());
    EXPECT_TRUE(PathExists(dir + "/rootfs/hello"));
  }  // the owner unmounts
  EXPECT_FALSE(PathExists(dir + "/rootfs/hello"));

  // A failing second mount names what it tried and leaves nothing mounted.
  auto bad = RootfsMount::Mount({{"bind", dir + "/src", {"rbind"}}, {"bind", dir + "/missing", {"rbind"}}},
                                dir + "/rootfs");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find(dir + "/missing"), std::string::npos);
  EXPECT_FALSE(PathExists(dir + "/rootfs/hello"));
  ASSERT_TRUE(RemoveAll(dir).ok());
}

}  // namespace
}  // namespace cask::sandbox
