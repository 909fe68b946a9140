#include "cmd/cask-agent/switch_root.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/base/fs.h"

namespace cask::agent {
namespace {

TEST(SwitchRoot, DetectsInitramfsRoot) {
  EXPECT_TRUE(RootIsInitramfs("1 1 0:2 / / rw - rootfs rootfs rw,size=1000k\n"
                              "20 1 0:20 / /proc rw,nosuid shared:1 - proc proc rw\n"));
  // After the switch (the rootfs line is outside the chroot and not shown).
  EXPECT_FALSE(RootIsInitramfs("25 1 0:21 / / rw - tmpfs tmpfs rw,mode=755\n"
                               "26 25 0:5 / /proc rw - proc proc rw\n"));
  // A host.
  EXPECT_FALSE(RootIsInitramfs("24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"));
  EXPECT_FALSE(RootIsInitramfs(""));
}

TEST(SwitchRoot, CopyTreeThenDeleteTree) {
  char tmpl[] = "/tmp/cask-switch-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string src = std::string(tmpl) + "/src", dst = std::string(tmpl) + "/dst";
  ASSERT_TRUE(MkdirAll(src + "/lib/modules/6.1/kernel").ok());
  ASSERT_TRUE(MkdirAll(src + "/skipme").ok());
  ASSERT_TRUE(MkdirAll(dst).ok());
  std::string big(3 << 20, 'x');  // larger than the copy buffer
  ASSERT_TRUE(WriteFile(src + "/init", big, 0755).ok());
  ASSERT_TRUE(WriteFile(src + "/lib/modules/6.1/modules.dep", "kernel/a.ko:\n").ok());
  ASSERT_TRUE(WriteFile(src + "/skipme/file", "no").ok());
  ASSERT_EQ(symlink("lib", (src + "/lib64").c_str()), 0);
  ASSERT_EQ(mkfifo((src + "/fifo").c_str(), 0600), 0);

  ASSERT_TRUE(CopyTree(src, dst, "skipme").ok());
  auto init = ReadFile(dst + "/init");
  ASSERT_TRUE(init.ok());
  EXPECT_TRUE(*init == big);
  struct stat st;
  ASSERT_EQ(stat((dst + "/init").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(*ReadFile(dst + "/lib/modules/6.1/modules.dep"), "kernel/a.ko:\n");
  char link[64] = {};
  ASSERT_GT(readlink((dst + "/lib64").c_str(), link, sizeof link), 0);
  EXPECT_STREQ(link, "lib");
  ASSERT_EQ(lstat((dst + "/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_FALSE(PathExists(dst + "/skipme"));
  EXPECT_TRUE(PathExists(dst + "/lib/modules/6.1/kernel"));

  // Copying onto existing files fails rather than silently mixing trees.
  EXPECT_FALSE(CopyTree(src, dst, "skipme").ok());

  ASSERT_TRUE(DeleteTree(src, "skipme").ok());
  EXPECT_FALSE(PathExists(src + "/init"));
  EXPECT_FALSE(PathExists(src + "/lib"));
  EXPECT_TRUE(PathExists(src + "/skipme/file"));
  ASSERT_TRUE(RemoveAll(tmpl).ok());
}

}  // namespace
}  // namespace cask::agent
