#include "lib/shim/rootfs.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include "lib/base/fs.h"
#include "lib/shim/delete.h"
#include "lib/sys/mount_options.h"

namespace cask::shim {
namespace {

// The options containerd sends for its snapshots, as lib/sys splits them.
TEST(Rootfs, ContainerdOptions) {
  auto mo = sys::ParseMountOptions({"index=off", "userxattr", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"});
  ASSERT_TRUE(mo.ok());
  EXPECT_EQ(mo->flags, 0u);
  EXPECT_EQ(mo->data, "index=off,userxattr,workdir=/w,upperdir=/u,lowerdir=/a:/b");
  auto ro = sys::ParseMountOptions({"ro", "bind", "nosuid", "rprivate"});
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(ro->flags, static_cast<unsigned long>(MS_RDONLY | MS_BIND | MS_NOSUID));
  ASSERT_EQ(ro->propagation.size(), 1u);
  EXPECT_EQ(ro->propagation[0], static_cast<unsigned long>(MS_PRIVATE | MS_REC));
}

TEST(Rootfs, UnsupportedOptionMountsNothing) {
  auto st = MountAll({{"bind", "/nonexistent-src", "", {"rbind", "idmap"}}}, "/nonexistent-target");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  EXPECT_NE(st.error().ToString().find("idmap"), std::string::npos);
}

TEST(Rootfs, MountBindAndUnmount) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  char tmpl[] = "/tmp/cask-rootfs-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(MkdirAll(dir + "/src").ok());
  ASSERT_TRUE(MkdirAll(dir + "/rootfs").ok());
  ASSERT_TRUE(WriteFile(dir + "/src/hello", "hi").ok());
  ASSERT_TRUE(MountAll({{"bind", dir + "/src", "", {"ro", "rbind"}}}, dir + "/rootfs").ok());
  auto content = ReadFile(dir + "/rootfs/hello");
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "hi");
  // Read-only as asked.
  EXPECT_FALSE(WriteFile(dir + "/rootfs/x", "y").ok());
  ASSERT_TRUE(UnmountAll(dir + "/rootfs").ok());
  EXPECT_FALSE(PathExists(dir + "/rootfs/hello"));

  // A failing mount names what it tried and leaves nothing mounted.
  auto bad = MountAll({{"bind", dir + "/missing", "", {"rbind"}}}, dir + "/rootfs");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find(dir + "/missing"), std::string::npos);
  ASSERT_TRUE(RemoveAll(dir).ok());
}

}  // namespace
}  // namespace cask::shim
