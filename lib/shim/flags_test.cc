#include "lib/shim/flags.h"

#include <gtest/gtest.h>

namespace cask::shim {
namespace {

TEST(Flags, ContainerdStartInvocation) {
  auto f = ParseFlags({"-namespace", "default", "-address", "/run/containerd/containerd.sock", "-publish-binary",
                       "/usr/bin/containerd", "-id", "quick1", "-debug", "start"});
  ASSERT_TRUE(f.ok()) << f.error().ToString();
  EXPECT_EQ(f->ns, "default");
  EXPECT_EQ(f->address, "/run/containerd/containerd.sock");
  EXPECT_EQ(f->publish_binary, "/usr/bin/containerd");
  EXPECT_EQ(f->id, "quick1");
  EXPECT_TRUE(f->debug);
  EXPECT_EQ(f->action, Action::kStart);
}

TEST(Flags, EqualsAndDoubleDashForms) {
  auto f = ParseFlags({"--namespace=k8s.io", "-id=abc", "--bundle", "/b", "-debug=false", "delete"});
  ASSERT_TRUE(f.ok()) << f.error().ToString();
  EXPECT_EQ(f->ns, "k8s.io");
  EXPECT_EQ(f->id, "abc");
  EXPECT_EQ(f->bundle, "/b");
  EXPECT_FALSE(f->debug);
  EXPECT_EQ(f->action, Action::kDelete);
}

TEST(Flags, NoActionIsDaemonAndDefaults) {
  auto f = ParseFlags({"-namespace", "ns", "-id", "x", "-address", "/a"});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->action, Action::kDaemon);
  EXPECT_EQ(f->publish_binary, "containerd");
  EXPECT_FALSE(f->debug);
}

TEST(Flags, Version) {
  auto f = ParseFlags({"-v"});
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->version);
}

TEST(Flags, EmptyValueWithEquals) {
  auto f = ParseFlags({"-address=", "-id", "x", "start"});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->address, "");
}

TEST(Flags, DoubleDashEndsFlags) {
  auto f = ParseFlags({"-id", "x", "--", "start"});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->action, Action::kStart);
}

TEST(Flags, Errors) {
  auto unknown = ParseFlags({"-foo", "start"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), Code::kInvalidArgument);
  EXPECT_NE(unknown.error().ToString().find("-foo"), std::string::npos);

  auto missing = ParseFlags({"-id"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("-id"), std::string::npos);

  auto badbool = ParseFlags({"-debug=maybe"});
  ASSERT_FALSE(badbool.ok());
  EXPECT_NE(badbool.error().ToString().find("maybe"), std::string::npos);

  auto action = ParseFlags({"-id", "x", "stop"});
  ASSERT_FALSE(action.ok());
  EXPECT_NE(action.error().ToString().find("stop"), std::string::npos);

  EXPECT_FALSE(ParseFlags({"start", "extra"}).ok());
  EXPECT_FALSE(ParseFlags({"---id", "x"}).ok());
}

TEST(Flags, DaemonArgsRoundTrip) {
  Flags f;
  f.ns = "default";
  f.id = "c1";
  f.address = "/run/containerd/containerd.sock";
  f.publish_binary = "/usr/bin/containerd";
  f.debug = true;
  auto back = ParseFlags(DaemonArgs(f));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->ns, f.ns);
  EXPECT_EQ(back->id, f.id);
  EXPECT_EQ(back->address, f.address);
  EXPECT_EQ(back->publish_binary, f.publish_binary);
  EXPECT_TRUE(back->debug);
  EXPECT_EQ(back->action, Action::kDaemon);
}

}  // namespace
}  // namespace cask::shim
