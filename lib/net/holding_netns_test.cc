// Needs root (CAP_SYS_ADMIN for unshare and the bind mount).
#include "lib/net/holding_netns.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "lib/base/fs.h"
#include "lib/net/netns.h"
#include "lib/net/rtnl.h"
#include "lib/net/tap.h"

namespace cask::net {
namespace {

class HoldingNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    char tmpl[] = "/tmp/cask-holding-netns-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/netns";
  }
  void TearDown() override {
    if (!dir_.empty()) {
      (void)RemoveHoldingNetnsAt(path_);
      ::rmdir(dir_.c_str());
    }
  }
  std::string dir_, path_;
};

TEST_F(HoldingNetnsTest, CreatesMountsAndRemoves) {
  auto h = HoldingNetns::Create(path_);
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_TRUE(h->valid());
  // The path opens as a network namespace other than ours, and a TAP made
  // there is not in ours.
  auto fd = OpenNetns(path_);
  ASSERT_TRUE(fd.ok()) << fd.error().ToString();
  struct stat a{}, b{};
  ASSERT_EQ(::fstat(fd->get(), &a), 0);
  ASSERT_EQ(::stat("/proc/self/ns/net", &b), 0);
  EXPECT_NE(a.st_ino, b.st_ino);
  if (::access("/dev/net/tun", R_OK | W_OK) == 0) {
    Result<UniqueFd> tap = Error::Internal("unset");
    ASSERT_TRUE(RunInNetns(h->fd(), [&] {
                  tap = CreateTap("cask-hold-t");
                  return Ok();
                }).ok());
    ASSERT_TRUE(tap.ok()) << tap.error().ToString();
    auto nl = NetlinkSocket::Open();
    ASSERT_TRUE(nl.ok());
    auto links = ListLinks(*nl);
    ASSERT_TRUE(links.ok());
    for (const auto& l : *links) EXPECT_NE(l.name, "cask-hold-t");
  }
  // A second one on the same path is refused and leaves the first intact.
  auto again = HoldingNetns::Create(path_);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists);
  EXPECT_TRUE(OpenNetns(path_).ok());
  ASSERT_TRUE(h->Remove().ok());
  EXPECT_FALSE(PathExists(path_));
  EXPECT_TRUE(h->Remove().ok());  // idempotent
}

TEST_F(HoldingNetnsTest, RemoveAtCleansUpALeftMountAndRefusesOtherFiles) {
  {
    auto h = HoldingNetns::Create(path_);
    ASSERT_TRUE(h.ok()) << h.error().ToString();
    // As if its owner died: the mount and file stay.
    HoldingNetns leaked = std::move(*h);
    ASSERT_TRUE(OpenNetns(path_).ok());
    ASSERT_TRUE(RemoveHoldingNetnsAt(path_).ok());
    EXPECT_FALSE(PathExists(path_));
    EXPECT_TRUE(leaked.Remove().ok());  // already gone: fine
  }
  EXPECT_TRUE(RemoveHoldingNetnsAt(path_).ok());  // missing: fine
  ASSERT_TRUE(WriteFile(path_, "not a namespace").ok());
  auto st = RemoveHoldingNetnsAt(path_);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(PathExists(path_));
  ::unlink(path_.c_str());
}

}  // namespace
}  // namespace cask::net
