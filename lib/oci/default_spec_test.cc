#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lib/oci/parse.h"
#include "lib/oci/testdata_test.h"

namespace cask::oci {
namespace {

using Json = nlohmann::json;

TEST(DefaultSpec, EqualsRuncSpecFixture) {
  auto runc = ParseSpec(testdata::kRuncSpec);
  ASSERT_TRUE(runc.ok()) << runc.error().ToString();
  Spec mine = DefaultSpec({"sh"}, true);
  EXPECT_EQ(mine, *runc);
  // Field by field, as JSON, so a difference is easy to read.
  EXPECT_EQ(Json::parse(ToJson(mine)).dump(2), Json::parse(testdata::kRuncSpec).dump(2));
  // And byte for byte: same field order, same indentation.
  EXPECT_EQ(ToJson(mine), testdata::kRuncSpec);
}

TEST(DefaultSpec, ArgsAndTerminal) {
  Spec s = DefaultSpec({"/bin/echo", "hello"}, false);
  EXPECT_TRUE(Validate(s).ok());
  EXPECT_FALSE(s.process->terminal);
  EXPECT_EQ(s.process->args, (std::vector<std::string>{"/bin/echo", "hello"}));
  EXPECT_EQ(s.root->path, "rootfs");
  EXPECT_TRUE(s.root->readonly);
  // Everything else is the same as with a terminal.
  Spec t = DefaultSpec({"/bin/echo", "hello"}, true);
  t.process->terminal = false;
  EXPECT_EQ(s, t);
}

// Compares with the runc installed on this machine, when there is one.
TEST(DefaultSpec, EqualsLiveRuncSpec) {
  if (std::system("command -v runc >/dev/null 2>&1") != 0) GTEST_SKIP() << "runc not installed";
  std::string dir = ::testing::TempDir() + "/oci_runc_spec_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  std::string cmd = "cd '" + dir + "' && runc spec";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(dir + "/config.json");
  std::stringstream buf;
  buf << in.rdbuf();
  std::filesystem::remove_all(dir);
  Json runc = Json::parse(buf.str());
  // Older/newer runc versions write another ociVersion; the rest must match.
  runc["ociVersion"] = "1.0.2-dev";
  EXPECT_EQ(Json::parse(ToJson(DefaultSpec({"sh"}, true))).dump(2), runc.dump(2));
}

}  // namespace
}  // namespace cask::oci
