#include "lib/sys/mount_options.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

namespace cask::sys {
namespace {

TEST(MountOptions, FlagsAndData) {
  auto o = ParseMountOptions({"nosuid", "strictatime", "mode=755", "", "size=65536k"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->flags, static_cast<unsigned long>(MS_NOSUID | MS_STRICTATIME));
  EXPECT_EQ(o->data, "mode=755,size=65536k");
  EXPECT_FALSE(o->bind());
}

TEST(MountOptions, LaterWordsWin) {
  auto o = ParseMountOptions({"ro", "nodev", "rw", "dev", "noexec"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->flags, static_cast<unsigned long>(MS_NOEXEC));
  auto atime = ParseMountOptions({"noatime", "strictatime", "relatime"});
  ASSERT_TRUE(atime.ok());
  EXPECT_EQ(atime->flags, static_cast<unsigned long>(MS_RELATIME));
}

TEST(MountOptions, BindPropagationAndRecursiveAttrs) {
  auto o = ParseMountOptions({"rbind", "ro", "rprivate", "slave", "rro", "rnosuid", "rsuid"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->bind());
  EXPECT_EQ(o->flags, static_cast<unsigned long>(MS_BIND | MS_REC | MS_RDONLY));
  ASSERT_EQ(o->propagation.size(), 2u);
  EXPECT_EQ(o->propagation[0], static_cast<unsigned long>(MS_PRIVATE | MS_REC));
  EXPECT_EQ(o->propagation[1], static_cast<unsigned long>(MS_SLAVE));
  EXPECT_EQ(o->attr_set, static_cast<uint64_t>(MOUNT_ATTR_RDONLY));
  EXPECT_EQ(o->attr_clr, static_cast<uint64_t>(MOUNT_ATTR_NOSUID));
  EXPECT_TRUE(o->data.empty());
}

TEST(MountOptions, OverlayDataKeepsOrder) {
  auto o = ParseMountOptions({"index=off", "userxattr", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->flags, 0u);
  EXPECT_EQ(o->data, "index=off,userxattr,workdir=/w,upperdir=/u,lowerdir=/a:/b");
}

TEST(MountOptions, UnsupportedIsInvalid) {
  for (const char* w : {"idmap", "ridmap", "tmpcopyup", "copy-symlink"}) {
    auto o = ParseMountOptions({"ro", w});
    ASSERT_FALSE(o.ok()) << w;
    EXPECT_EQ(o.error().code(), Code::kInvalidArgument);
  }
}

TEST(MountOptions, Propagation) {
  EXPECT_EQ(*ParsePropagation(""), 0ul);
  EXPECT_EQ(*ParsePropagation("rslave"), static_cast<unsigned long>(MS_SLAVE | MS_REC));
  EXPECT_EQ(*ParsePropagation("shared"), static_cast<unsigned long>(MS_SHARED));
  auto bad = ParsePropagation("rro");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace cask::sys
