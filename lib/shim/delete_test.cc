#include "lib/shim/delete.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "lib/base/fs.h"
#include "lib/shim/start.h"

namespace cask::shim {
namespace {

TEST(Delete, ResponseEncoding) {
  DeleteResult r;
  r.pid = 42;
  r.exited_at = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000) + std::chrono::nanoseconds(5));
  std::string bytes = EncodeDeleteResponse(r);
  ::containerd::task::v2::DeleteResponse resp;
  ASSERT_TRUE(resp.ParseFromString(bytes));
  EXPECT_EQ(resp.pid(), 42u);
  EXPECT_EQ(resp.exit_status(), 137u);
  EXPECT_EQ(resp.exited_at().seconds(), 1700000000);
  EXPECT_EQ(resp.exited_at().nanos(), 5);
  // Field 2 (exit_status, varint 137) is on the wire as 0x10 0x89 0x01.
  EXPECT_NE(bytes.find(std::string("\x10\x89\x01", 3)), std::string::npos);
}

TEST(Delete, IdempotentAndUnmounts) {
  char tmpl[] = "/tmp/cask-delete-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string bundle = tmpl;
  std::string rootfs = bundle + "/rootfs";
  ASSERT_TRUE(MkdirAll(rootfs).ok());
  bool mounted = ::mount("tmpfs", rootfs.c_str(), "tmpfs", 0, "size=1m") == 0;
  if (mounted) {
    // Stack a second one: delete must remove both.
    ASSERT_EQ(::mount("tmpfs", rootfs.c_str(), "tmpfs", 0, "size=1m"), 0);
  }
  Flags f;
  f.id = "t";
  for (int i = 0; i < 2; ++i) {
    auto out = RunDelete(f, bundle);
    ASSERT_TRUE(out.ok()) << out.error().ToString();
    ::containerd::task::v2::DeleteResponse resp;
    ASSERT_TRUE(resp.ParseFromString(out->response));
    EXPECT_EQ(out->warnings, "");
    EXPECT_EQ(resp.exit_status(), 137u);
    EXPECT_GT(resp.exited_at().seconds(), 0);
  }
  if (mounted) {
    auto mi = ReadFile("/proc/self/mountinfo");
    ASSERT_TRUE(mi.ok());
    EXPECT_EQ(mi->find(rootfs), std::string::npos);
  }
  // A bundle without rootfs is fine too.
  ASSERT_EQ(::rmdir(rootfs.c_str()), 0);
  EXPECT_TRUE(RunDelete(f, bundle).ok());
  // A failing cleanup hook is reported as a warning; the response is still there.
  auto warned = RunDelete(f, bundle, [](const std::string&) -> Status { return Error::Internal("boom"); });
  ASSERT_TRUE(warned.ok());
  EXPECT_NE(warned->warnings.find("boom"), std::string::npos);
  EXPECT_FALSE(warned->response.empty());
  ::rmdir(bundle.c_str());
}

TEST(Delete, RemovesOnlyADeadShimSocket) {
  char tmpl[] = "/tmp/cask-delete-sock-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string sock = dir + "/shim.sock";
  ASSERT_TRUE(WriteFile(dir + "/address", "unix://" + sock).ok());

  // A live shim: listening socket is kept.
  {
    auto b = BindShimSocket(sock);
    ASSERT_TRUE(b.ok()) << b.error().ToString();
    ASSERT_TRUE(b->fd.valid());
    ASSERT_TRUE(RemoveDeadSocket(dir).ok());
    EXPECT_TRUE(PathExists(sock));
  }
  // The shim died (its fd closed, the file stays): removed.
  EXPECT_TRUE(PathExists(sock));
  ASSERT_TRUE(RemoveDeadSocket(dir).ok());
  EXPECT_FALSE(PathExists(sock));
  ASSERT_TRUE(RemoveDeadSocket(dir).ok());  // idempotent
  ASSERT_TRUE(RemoveAll(dir).ok());
}

}  // namespace
}  // namespace cask::shim
