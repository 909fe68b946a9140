#include "cmd/containerd-shim-cask-v2/task_adapter.h"

#include <gtest/gtest.h>

#include "github.com/containerd/containerd/pkg/runtimeoptions/v1/api.pb.h"
#include "github.com/containerd/containerd/runtime/linux/runctypes/runc.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"

namespace cask::shim {
namespace {

std::string Options(const std::string& path) {
  ::runtimeoptions::v1::Options o;
  o.set_config_path(path);
  return o.SerializeAsString();
}

TEST(RuntimeOptions, ConfigPath) {
  auto p = ParseRuntimeOptions("runtimeoptions.v1.Options", Options("/etc/cask/other.toml"));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->config_path, "/etc/cask/other.toml");
  auto prefixed = ParseRuntimeOptions("type.googleapis.com/runtimeoptions.v1.Options", Options("/x.toml"));
  ASSERT_TRUE(prefixed.ok());
  EXPECT_EQ(prefixed->config_path, "/x.toml");
  auto none = ParseRuntimeOptions("", "");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->config_path, "");
  auto empty_path = ParseRuntimeOptions("runtimeoptions.v1.Options", "");
  ASSERT_TRUE(empty_path.ok());
  EXPECT_EQ(empty_path->config_path, "");
}

TEST(RuntimeOptions, RuncOptionsAreAcceptedAndTheVmFieldsKept) {
  ::containerd::runc::v1::Options o;
  o.set_io_uid(1000);
  o.set_io_gid(1001);
  o.set_shim_cgroup("/shims/x");
  o.set_binary_name("runc");
  o.set_systemd_cgroup(true);
  auto r = ParseRuntimeOptions("containerd.runc.v1.Options", o.SerializeAsString());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->io_uid, 1000u);
  EXPECT_EQ(r->io_gid, 1001u);
  EXPECT_EQ(r->shim_cgroup, "/shims/x");
  EXPECT_EQ(r->ignored, (std::vector<std::string>{"binary_name", "systemd_cgroup"}));
  EXPECT_TRUE(ParseRuntimeOptions("containerd.runc.v1.Options", "").ok());

  ::containerd::linux::runc::CreateOptions c;
  c.set_io_uid(7);
  c.set_shim_cgroup("/s");
  c.set_no_pivot_root(true);
  auto cr = ParseRuntimeOptions("type.googleapis.com/containerd.linux.runc.CreateOptions", c.SerializeAsString());
  ASSERT_TRUE(cr.ok()) << cr.error().ToString();
  EXPECT_EQ(cr->io_uid, 7u);
  EXPECT_EQ(cr->shim_cgroup, "/s");
  EXPECT_EQ(cr->ignored, (std::vector<std::string>{"no_pivot_root"}));
}

TEST(RuntimeOptions, Errors) {
  auto other = ParseRuntimeOptions("containerd.other.v9.Options", "");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code(), Code::kInvalidArgument);
  EXPECT_NE(other.error().ToString().find("containerd.other.v9.Options"), std::string::npos);
  EXPECT_FALSE(ParseRuntimeOptions("runtimeoptions.v1.Options", "\xff\xff\xff").ok());
  EXPECT_FALSE(ParseRuntimeOptions("containerd.runc.v1.Options", "\xff\xff\xff").ok());
  auto rel = ParseRuntimeOptions("runtimeoptions.v1.Options", Options("relative.toml"));
  ASSERT_FALSE(rel.ok());
  EXPECT_NE(rel.error().ToString().find("relative.toml"), std::string::npos);
}

}  // namespace
}  // namespace cask::shim
