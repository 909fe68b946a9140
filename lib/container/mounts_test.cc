#include "lib/container/mounts.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

namespace cask::container {
namespace {

TEST(MountOptionsTest, FlagsAndData) {
  auto o = ParseMountOptions({"nosuid", "strictatime", "mode=755", "size=65536k"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->flags, MS_NOSUID | MS_STRICTATIME);
  EXPECT_EQ(o->data, "mode=755,size=65536k");
  EXPECT_FALSE(o->bind());
  EXPECT_TRUE(o->propagation.empty());
}

TEST(MountOptionsTest, DevptsDataIsPassedThrough) {
  auto o = ParseMountOptions({"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->flags, MS_NOSUID | MS_NOEXEC);
  EXPECT_EQ(o->data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
}

TEST(MountOptionsTest, ClearingOptionsUndoEarlierOnes) {
  auto o = ParseMountOptions({"ro", "nodev", "rw", "dev", "noexec"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->flags, MS_NOEXEC);
  auto atime = ParseMountOptions({"noatime", "relatime"});
  ASSERT_TRUE(atime.ok());
  EXPECT_EQ(atime->flags, MS_RELATIME);  // one atime mode wins
}

TEST(MountOptionsTest, BindAndPropagation) {
  auto o = ParseMountOptions({"rbind", "ro", "rprivate"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->bind());
  EXPECT_EQ(o->flags, MS_BIND | MS_REC | MS_RDONLY);
  ASSERT_EQ(o->propagation.size(), 1u);
  EXPECT_EQ(o->propagation[0], MS_PRIVATE | MS_REC);
  EXPECT_EQ(o->data, "");
  auto b = ParseMountOptions({"bind", "slave"});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->flags, MS_BIND);
  EXPECT_EQ(b->propagation[0], MS_SLAVE);
}

TEST(MountOptionsTest, RecursiveAttributes) {
  auto o = ParseMountOptions({"rbind", "rro", "rnosuid"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
  EXPECT_EQ(o->attr_clr, 0u);
  EXPECT_EQ(o->flags, MS_BIND | MS_REC);
}

TEST(MountOptionsTest, UnsupportedOptionsAreErrors) {
  auto o = ParseMountOptions({"idmap"});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code(), Code::kInvalidArgument);
  EXPECT_NE(o.error().ToString().find("idmap"), std::string::npos);
}

TEST(MountOptionsTest, Propagation) {
  EXPECT_EQ(*ParsePropagation(""), 0u);
  EXPECT_EQ(*ParsePropagation("rshared"), MS_SHARED | MS_REC);
  EXPECT_EQ(*ParsePropagation("private"), MS_PRIVATE);
  EXPECT_FALSE(ParsePropagation("sideways").ok());
}

TEST(PlanRootfsTest, ValidatesBeforeAnySideEffect) {
  oci::Spec spec;
  spec.mounts.push_back({"relative", "tmpfs", "tmpfs", {}});
  auto p = PlanRootfs(spec, "/");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().ToString().find("relative"), std::string::npos);

  spec.mounts = {{"/data", "bind", "not/absolute", {"rbind"}}};
  EXPECT_FALSE(PlanRootfs(spec, "/").ok());

  spec.mounts = {{"/dev", "tmpfs", "tmpfs", {"nosuid", "mode=755"}}};
  auto ok = PlanRootfs(spec, "/");
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  EXPECT_TRUE(ok->dev_tmpfs);
  EXPECT_EQ(ok->root_propagation, MS_REC | MS_SLAVE);

  auto missing = PlanRootfs(spec, "/nonexistent-rootfs-dir");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace cask::container
