#include "cmd/containerd-shim-cask-v2/task_adapter.h"

#include <gtest/gtest.h>

#include "github.com/containerd/containerd/pkg/runtimeoptions/v1/api.pb.h"

namespace cask::shim {
namespace {

std::string Options(const std::string& path) {
  ::runtimeoptions::v1::Options o;
  o.set_config_path(path);
  return o.SerializeAsString();
}

TEST(RuntimeOptions, ConfigPath) {
  auto p = ConfigPathFromOptions("runtimeoptions.v1.Options", Options("/etc/cask/other.toml"));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(*p, "/etc/cask/other.toml");
  auto prefixed = ConfigPathFromOptions("type.googleapis.com/runtimeoptions.v1.Options", Options("/x.toml"));
  ASSERT_TRUE(prefixed.ok());
  EXPECT_EQ(*prefixed, "/x.toml");
  auto none = ConfigPathFromOptions("", "");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
  auto empty_path = ConfigPathFromOptions("runtimeoptions.v1.Options", "");
  ASSERT_TRUE(empty_path.ok());
  EXPECT_EQ(*empty_path, "");
}

TEST(RuntimeOptions, Errors) {
  auto runc = ConfigPathFromOptions("containerd.runc.v1.Options", "");
  ASSERT_FALSE(runc.ok());
  EXPECT_EQ(runc.error().code(), Code::kInvalidArgument);
  EXPECT_NE(runc.error().ToString().find("containerd.runc.v1.Options"), std::string::npos);
  EXPECT_FALSE(ConfigPathFromOptions("runtimeoptions.v1.Options", "\xff\xff\xff").ok());
  auto rel = ConfigPathFromOptions("runtimeoptions.v1.Options", Options("relative.toml"));
  ASSERT_FALSE(rel.ok());
  EXPECT_NE(rel.error().ToString().find("relative.toml"), std::string::npos);
}

}  // namespace
}  // namespace cask::shim
