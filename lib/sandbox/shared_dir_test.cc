#include "lib/sandbox/shared_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

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
  auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
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

  auto mounts = LiveMountPointsUnder(root_ + "/mounts");
  ASSERT_TRUE(mounts.ok());
  EXPECT_EQ(mounts->size(), 3u);  // self-bind, rootfs, file
  auto exported = LiveMountPointsUnder(root_ + "/shared");
  ASSERT_TRUE(exported.ok());
  EXPECT_EQ(exported->size(), 3u);  // the export and the two propagated binds

  // Removing a tree with mounts in it is refused (same filesystem: a plain
  // rm -rf would descend into the bind and delete the source).
  EXPECT_FALSE(RemoveTreeNoMounts(root_ + "/shared").ok());

  ASSERT_TRUE((*d)->Teardown().ok());
  EXPECT_FALSE(PathExists(root_ + "/shared"));
  EXPECT_FALSE(PathExists(root_ + "/mounts"));
  auto left = LiveMountPointsUnder(root_);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
  auto still = ReadFile(src_ + "/sub/file");
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(*still, "precious");
  EXPECT_TRUE((*d)->Teardown().ok());  // idempotent
}

TEST_F(SharedDirTest, RemoveUndoesOneContainer) {
  auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
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
  auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  auto busy = Open(root_ + "/shared/c1/rootfs/sub/file", O_RDONLY);  // keeps the mount busy
  ASSERT_TRUE(busy.ok());
  ASSERT_TRUE((*d)->Remove("c1").ok());
  EXPECT_FALSE(PathExists(root_ + "/shared/c1"));
  EXPECT_TRUE(PathExists(src_ + "/sub/file"));
}

TEST_F(SharedDirTest, RejectsEscapingPaths) {
  auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  EXPECT_EQ((*d)->Bind(src_, "../escape", false).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*d)->Bind(src_, "/abs", false).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*d)->Bind(src_, "a/./b", false).error().code(), Code::kInvalidArgument);
  EXPECT_EQ((*d)->Remove("..").error().code(), Code::kInvalidArgument);
  EXPECT_FALSE((*d)->Bind(root_ + "/missing", "c1/rootfs", false).ok());
}

TEST_F(SharedDirTest, DestructorTearsDown) {
  {
    auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
    ASSERT_TRUE(d.ok()) << d.error().ToString();
    ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  }
  EXPECT_FALSE(PathExists(root_ + "/shared"));
  EXPECT_TRUE(PathExists(src_ + "/sub/file"));
}

// Mount ids of every mount that is NOT at or below `dir`.
std::vector<std::string> MountsOutside(const std::string& dir) {
  std::vector<std::string> out;
  auto info = ReadFile("/proc/self/mountinfo");
  EXPECT_TRUE(info.ok());
  auto all = MountPointsUnder(*info, "/");
  auto inside = MountPointsUnder(*info, dir);
  for (auto& m : all)
    if (std::find(inside.begin(), inside.end(), m) == inside.end()) out.push_back(m);
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(SharedDirTest, SymlinkSwappedComponentIsRefusedAndNothingIsMountedOutside) {
  // What a guest that could write the tree would do: replace a component of
  // the target path with a symlink to a host directory before the bind.
  auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  const std::string outside = root_ + "/outside";  // stands for /etc
  ASSERT_TRUE(MkdirAll(outside + "/rootfs").ok());
  ASSERT_TRUE(WriteFile(outside + "/passwd", "root:x:0:0").ok());
  auto before = MountsOutside(root_ + "/mounts");

  // The container's directory itself is the symlink.
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/mounts/c1").c_str()), 0);
  auto r1 = (*d)->Bind(src_, "c1/rootfs", false);
  EXPECT_FALSE(r1.ok());
  // A deeper component ("mounts") is the symlink; the leaf exists outside.
  ASSERT_TRUE(MkdirAll(root_ + "/mounts/c2").ok());
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/mounts/c2/mounts").c_str()), 0);
  auto r2 = (*d)->Bind(src_, "c2/mounts/rootfs", false);
  EXPECT_FALSE(r2.ok());
  // The leaf is a symlink to a host directory.
  ASSERT_TRUE(MkdirAll(root_ + "/mounts/c3").ok());
  ASSERT_EQ(::symlink((outside + "/rootfs").c_str(), (root_ + "/mounts/c3/rootfs").c_str()), 0);
  auto r3 = (*d)->Bind(src_, "c3/rootfs", false);
  EXPECT_FALSE(r3.ok());
  // A relative symlink climbing out.
  ASSERT_TRUE(MkdirAll(root_ + "/mounts/c4").ok());
  ASSERT_EQ(::symlink("../../outside", (root_ + "/mounts/c4/rootfs").c_str()), 0);
  EXPECT_FALSE((*d)->Bind(src_, "c4/rootfs/x", false).ok());

  EXPECT_EQ(MountsOutside(root_ + "/mounts"), before) << "a mount appeared outside the share";
  auto through = ReadFile(outside + "/passwd");
  ASSERT_TRUE(through.ok());
  EXPECT_EQ(*through, "root:x:0:0");
  EXPECT_FALSE(PathExists(outside + "/rootfs/sub"));
  EXPECT_FALSE(PathExists(outside + "/mounts"));

  // Remove() of such a tree unlinks the symlinks and never follows them.
  ASSERT_TRUE((*d)->Remove("c1").ok());
  ASSERT_TRUE((*d)->Remove("c2").ok());
  ASSERT_TRUE((*d)->Remove("c3").ok());
  ASSERT_TRUE((*d)->Remove("c4").ok());
  EXPECT_TRUE(PathExists(outside + "/passwd"));
  EXPECT_TRUE(PathExists(outside + "/rootfs"));
  EXPECT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());  // the share still works
}

TEST_F(SharedDirTest, ExportIsReadOnlyExceptThroughTheBinds) {
  auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  ASSERT_TRUE(MkdirAll(root_ + "/vol").ok());
  ASSERT_TRUE((*d)->Bind(root_ + "/vol", "c1/mounts/0", false).ok());
  ASSERT_TRUE((*d)->Bind(root_ + "/vol", "c1/mounts/1", true).ok());
  const std::string ex = root_ + "/shared";
  // The top of the export and the directories between the binds: nothing
  // can be created, renamed, unlinked or symlinked.
  EXPECT_EQ(::mkdir((ex + "/new").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_FALSE(WriteFile(ex + "/file", "x").ok());
  EXPECT_EQ(::symlink("/etc", (ex + "/c1/evil").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::rename((ex + "/c1").c_str(), (ex + "/c9").c_str()), -1);
  EXPECT_EQ(::rmdir((ex + "/c1/mounts").c_str()), -1);
  EXPECT_EQ(::symlink("/etc", (ex + "/c1/mounts/2").c_str()), -1);
  // The container's own binds stay writable (unless read-only).
  EXPECT_TRUE(WriteFile(ex + "/c1/rootfs/written", "ok").ok());
  EXPECT_TRUE(PathExists(src_ + "/written"));
  EXPECT_TRUE(WriteFile(ex + "/c1/mounts/0/v", "ok").ok());
  // A read-only volume is read-only in the export too (set before attach,
  // so the propagated copy carries it).
  EXPECT_FALSE(WriteFile(ex + "/c1/mounts/1/w", "no").ok());
  EXPECT_FALSE(WriteFile(root_ + "/mounts/c1/mounts/1/w", "no").ok());
  ASSERT_TRUE((*d)->Remove("c1").ok());
  EXPECT_FALSE(PathExists(ex + "/c1"));
  EXPECT_TRUE(PathExists(root_ + "/vol/v"));
}

TEST_F(SharedDirTest, ExistsAndAlreadyExists) {
  auto d = SharedDir::Create(root_ + "/mounts", root_ + "/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  EXPECT_FALSE(*(*d)->Exists("c1"));
  ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  EXPECT_TRUE(*(*d)->Exists("c1/rootfs"));
  EXPECT_EQ((*d)->Bind(src_, "c1/rootfs", false).error().code(), Code::kAlreadyExists);
  ASSERT_EQ(::symlink("/etc", (root_ + "/mounts/link").c_str()), 0);
  EXPECT_FALSE((*d)->Exists("link/passwd").ok());
}

TEST_F(SharedDirTest, UnmountAllUnderStaysInsideTheTree) {
  // A symlink inside the tree to a directory holding another mount: only
  // the tree's own mounts are detached, nothing through the symlink.
  const std::string tree = root_ + "/tree";
  const std::string other = root_ + "/other";
  ASSERT_TRUE(MkdirAll(tree + "/a/m").ok());
  ASSERT_TRUE(MkdirAll(other + "/m").ok());
  ASSERT_EQ(::mount(src_.c_str(), (tree + "/a/m").c_str(), nullptr, MS_BIND, nullptr), 0);
  ASSERT_EQ(::mount(src_.c_str(), (other + "/m").c_str(), nullptr, MS_BIND, nullptr), 0);
  ASSERT_EQ(::symlink(other.c_str(), (tree + "/link").c_str()), 0);
  // Plain case works and leaves "other" alone.
  ASSERT_TRUE(UnmountAllUnder(tree).ok());
  auto in_tree = LiveMountPointsUnder(tree);
  ASSERT_TRUE(in_tree.ok());
  EXPECT_TRUE(in_tree->empty());
  auto in_other = LiveMountPointsUnder(other);
  ASSERT_TRUE(in_other.ok());
  EXPECT_EQ(in_other->size(), 1u);
  ASSERT_EQ(::umount2((other + "/m").c_str(), MNT_DETACH), 0);
}

// The pool's handover: a SharedDir made in one directory, released, the
// directory renamed, and adopted there; binds made then reach the export.
TEST_F(SharedDirTest, ReleasedRenamedAndAdopted) {
  ASSERT_TRUE(MkdirAll(root_ + "/pool/vm").ok());
  auto made = SharedDir::Create(root_ + "/pool/vm/mounts", root_ + "/pool/vm/shared");
  ASSERT_TRUE(made.ok()) << made.error().ToString();
  (*made)->Release();
  made->reset();  // released: nothing is unmounted
  EXPECT_EQ(LiveMountPointsUnder(root_ + "/pool/vm").value().size(), 2u);
  ASSERT_EQ(::rename((root_ + "/pool/vm").c_str(), (root_ + "/pod").c_str()), 0);

  // Not the layout (a plain directory), or with something mounted below:
  // refused, and nothing is torn down by the refusal.
  ASSERT_TRUE(MkdirAll(root_ + "/plain/mounts").ok());
  ASSERT_TRUE(MkdirAll(root_ + "/plain/shared").ok());
  EXPECT_EQ(SharedDir::Adopt(root_ + "/plain/mounts", root_ + "/plain/shared").error().code(),
            Code::kFailedPrecondition);

  auto d = SharedDir::Adopt(root_ + "/pod/mounts", root_ + "/pod/shared");
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  ASSERT_TRUE((*d)->Bind(src_, "c1/rootfs", false).ok());
  auto through = ReadFile(root_ + "/pod/shared/c1/rootfs/sub/file");
  ASSERT_TRUE(through.ok());
  EXPECT_EQ(*through, "precious");
  // A second adoption sees the bind: not a fresh export.
  EXPECT_EQ(SharedDir::Adopt(root_ + "/pod/mounts", root_ + "/pod/shared").error().code(),
            Code::kFailedPrecondition);
  ASSERT_TRUE((*d)->Teardown().ok());
  EXPECT_TRUE(LiveMountPointsUnder(root_).value().empty());
  EXPECT_FALSE(PathExists(root_ + "/pod/mounts"));
}

}  // namespace
}  // namespace cask::sandbox
