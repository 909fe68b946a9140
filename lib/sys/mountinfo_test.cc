#include "lib/sys/mountinfo.h"

#include <gtest/gtest.h>

namespace cask::sys {
namespace {

constexpr std::string_view kSample =
    "22 1 0:21 / / rw,relatime - rootfs rootfs rw\n"
    "23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw\n"
    "40 22 8:1 /srv/a\\040b /run/x\\040y rw master:3 shared:7 - ext4 /dev/sda\\0401 rw,errors=remount-ro\n"
    "41 40 0:30 / /run/x\\040y/sub rw - tmpfs tmpfs rw\n";

TEST(MountInfo, ParsesFieldsAndOptionalTags) {
  auto m = ParseMountInfo(kSample);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].id, 22);
  EXPECT_EQ(m[0].parent_id, 1);
  EXPECT_EQ(m[0].mount_point, "/");
  EXPECT_EQ(m[0].fstype, "rootfs");
  EXPECT_EQ(m[1].options, "rw,nosuid,nodev,noexec,relatime");
  EXPECT_EQ(m[1].fstype, "proc");
  EXPECT_EQ(m[2].root, "/srv/a b");
  EXPECT_EQ(m[2].mount_point, "/run/x y");
  EXPECT_EQ(m[2].fstype, "ext4");
  EXPECT_EQ(m[2].source, "/dev/sda 1");
  EXPECT_EQ(m[2].super_options, "rw,errors=remount-ro");
}

TEST(MountInfo, SkipsMalformedLines) {
  auto m = ParseMountInfo(
      "garbage\n"
      "1 2 3 4\n"
      "x 1 0:1 / /a rw - tmpfs t rw\n"           // id not a number
      "5 1 0:1 / /b rw shared:1 tmpfs t rw\n"    // no " - "
      "6 1 01 / /c rw - tmpfs t rw\n"            // no major:minor
      "7 1 0:1 / relative rw - tmpfs t rw\n"     // mount point not absolute
      "8 1 0:1 / /ok rw - tmpfs t\n"             // no super options: still fine
      "\n");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].mount_point, "/ok");
  EXPECT_EQ(m[0].super_options, "");
  EXPECT_TRUE(ParseMountInfo("").empty());
}

TEST(MountInfo, Unescape) {
  EXPECT_EQ(UnescapeMountPath("a\\040b\\011c\\012d\\134e"), "a b\tc\nd\\e");
  EXPECT_EQ(UnescapeMountPath("\\04"), "\\04");     // too short
  EXPECT_EQ(UnescapeMountPath("\\089"), "\\089");   // not octal
  EXPECT_EQ(UnescapeMountPath("end\\"), "end\\");
}

TEST(MountInfo, AtOrBelow) {
  EXPECT_TRUE(PathIsAtOrBelow("/a/b", "/a"));
  EXPECT_TRUE(PathIsAtOrBelow("/a", "/a/"));
  EXPECT_TRUE(PathIsAtOrBelow("/a", "/"));
  EXPECT_FALSE(PathIsAtOrBelow("/ab", "/a"));
  EXPECT_FALSE(PathIsAtOrBelow("/", "/a"));
}

TEST(MountInfo, MountPointsUnderDeepestFirstUpperFirst) {
  auto m = ParseMountInfo(
      "1 0 0:1 / / rw - ext4 r rw\n"
      "2 1 0:2 / /s rw - tmpfs a rw\n"
      "3 2 0:3 / /s/x rw - tmpfs b rw\n"
      "4 2 0:4 / /s/y/z rw - tmpfs c rw\n"
      "5 3 0:5 / /s/x rw - tmpfs d rw\n"   // stacked on /s/x
      "6 1 0:6 / /sx rw - tmpfs e rw\n");
  auto under = MountPointsUnder(m, "/s/");
  ASSERT_EQ(under.size(), 4u);
  EXPECT_EQ(under[0], "/s/y/z");
  EXPECT_EQ(under[1], "/s/x");
  EXPECT_EQ(under[2], "/s/x");
  EXPECT_EQ(under[3], "/s");
}

TEST(MountInfo, ReadsOwnTable) {
  auto m = ReadMountInfo();
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  bool root = false;
  for (const auto& e : *m) root = root || e.mount_point == "/";
  EXPECT_TRUE(root);
}

}  // namespace
}  // namespace cask::sys
