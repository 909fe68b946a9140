#include "cmd/cask-runtime/install.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <toml++/toml.h>

#include "lib/base/fs.h"

namespace cask::runtime {
namespace {

constexpr const char* kUserConfig = R"(# my containerd
version = 2
root = "/var/lib/containerd"  # kept

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
)";

toml::table Parse(const std::string& s) { return toml::parse(s); }

TEST(ContainerdImports, AddsALineWhenThereIsNoImports) {
  auto out = AddImport(kUserConfig, "/etc/containerd/conf.d/cask.toml");
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(*out, std::string("imports = [\"/etc/containerd/conf.d/cask.toml\"]\n") + kUserConfig);
  // Comments and formatting are kept.
  EXPECT_NE(out->find("root = \"/var/lib/containerd\"  # kept"), std::string::npos);
}

TEST(ContainerdImports, AppendsToAnExistingArrayInPlace) {
  std::string text = "version = 2\nimports = [\"/a.toml\",\n  \"/b.toml\"]  # mine\n[grpc]\n  address = \"/x\"\n";
  auto out = AddImport(text, "/c.toml");
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  EXPECT_EQ(*out, "version = 2\nimports = [\"/a.toml\", \"/b.toml\", \"/c.toml\"]  # mine\n[grpc]\n  address = \"/x\"\n");
}

TEST(ContainerdImports, IsIdempotent) {
  auto once = AddImport(kUserConfig, "/d/cask.toml");
  ASSERT_TRUE(once.ok());
  auto twice = AddImport(*once, "/d/cask.toml");
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(*twice, *once);
}

TEST(ContainerdImports, RemoveRestoresTheOriginal) {
  auto added = AddImport(kUserConfig, "/d/cask.toml");
  ASSERT_TRUE(added.ok());
  auto removed = RemoveImport(*added, "/d/cask.toml");
  ASSERT_TRUE(removed.ok()) << removed.error().ToString();
  EXPECT_EQ(*removed, kUserConfig);
  // Nothing to remove: unchanged.
  auto again = RemoveImport(*removed, "/d/cask.toml");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, kUserConfig);
  // Other imports stay.
  auto kept = RemoveImport("imports = ['/a.toml', '/d/cask.toml']\nversion = 2\n", "/d/cask.toml");
  ASSERT_TRUE(kept.ok()) << kept.error().ToString();
  EXPECT_EQ(*kept, "imports = [\"/a.toml\"]\nversion = 2\n");
}

TEST(ContainerdImports, RefusesWhatItCannotEdit) {
  EXPECT_FALSE(AddImport("imports = \"/a.toml\"\n", "/c.toml").ok());
  EXPECT_FALSE(AddImport("imports = [1, 2]\n", "/c.toml").ok());
  auto bad = AddImport("version = 2\n[grpc\n", "/c.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("line"), std::string::npos) << bad.error().ToString();
}

TEST(ContainerdImports, QuotesPaths) {
  auto out = AddImport("version = 2\n", "/odd \"dir\"\\x.toml");
  ASSERT_TRUE(out.ok()) << out.error().ToString();
  auto t = Parse(*out);
  EXPECT_EQ(t["imports"][0].value<std::string>(), "/odd \"dir\"\\x.toml");
}

TEST(ContainerdDropIn, CarriesTheMainCriSectionPlusCask) {
  ContainerdInstall in;
  in.config = "/etc/containerd/config.toml";
  in.cask_config = "/etc/cask/config.toml";
  auto text = RenderDropIn(kUserConfig, in);
  ASSERT_TRUE(text.ok()) << text.error().ToString();
  auto t = Parse(*text);
  EXPECT_EQ(t["version"].value<int64_t>(), 2);
  auto cri = t["plugins"]["io.containerd.grpc.v1.cri"];
  EXPECT_EQ(cri["sandbox_image"].value<std::string>(), "localhost/pause:3.6");
  EXPECT_EQ(cri["cni"]["bin_dir"].value<std::string>(), "/usr/lib/cni");
  EXPECT_EQ(cri["containerd"]["default_runtime_name"].value<std::string>(), "runc");
  EXPECT_EQ(cri["containerd"]["runtimes"]["runc"]["runtime_type"].value<std::string>(), "io.containerd.runc.v2");
  auto cask = cri["containerd"]["runtimes"]["cask"];
  EXPECT_EQ(cask["runtime_type"].value<std::string>(), "io.containerd.cask.v2");
  EXPECT_EQ(cask["pod_annotations"][0].value<std::string>(), "io.cask.*");
  EXPECT_EQ(cask["pod_annotations"].as_array()->size(), 1u);
  EXPECT_EQ(cask["privileged_without_host_devices"].value<bool>(), true);
  EXPECT_EQ(cask["options"]["ConfigPath"].value<std::string>(), "/etc/cask/config.toml");
  // Only the CRI plugin: the rest of the main config is not repeated.
  EXPECT_FALSE(t.contains("grpc"));
  EXPECT_FALSE(t.contains("root"));
}

TEST(ContainerdDropIn, KeepsTheDefaultRuncWhenTheMainHasNoRuntimes) {
  ContainerdInstall in;
  auto text = RenderDropIn("", in);
  ASSERT_TRUE(text.ok()) << text.error().ToString();
  auto t = Parse(*text);
  auto rts = t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
  EXPECT_EQ(rts["runc"]["runtime_type"].value<std::string>(), "io.containerd.runc.v2");
  EXPECT_TRUE(rts["cask"].is_table());
  EXPECT_FALSE(rts["cask"]["options"]);  // no cask config given: none sent
}

TEST(ContainerdDropIn, RefusesOtherConfigVersionsAndShapes) {
  ContainerdInstall in;
  EXPECT_FALSE(RenderDropIn("version = 3\n", in).ok());
  EXPECT_FALSE(RenderDropIn("plugins = 1\n", in).ok());
  EXPECT_FALSE(RenderDropIn("[plugins]\n\"io.containerd.grpc.v1.cri\" = 5\n", in).ok());
}

class ContainerdFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/cask-install-test.XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    dir_ = t;
    in_.config = dir_ + "/config.toml";
  }
  void TearDown() override { (void)RemoveAll(dir_); }
  std::string Read(const std::string& p) {
    auto r = ReadFile(p);
    return r.ok() ? *r : "<missing>";
  }
  std::string dir_;
  ContainerdInstall in_;
};

TEST_F(ContainerdFiles, InstallCheckUninstall) {
  ASSERT_TRUE(WriteFile(in_.config, kUserConfig, 0600).ok());
  EXPECT_FALSE(InspectContainerd(in_.config).configured);

  ASSERT_TRUE(InstallContainerd(in_).ok());
  std::string dropin = dir_ + "/conf.d/cask.toml";
  EXPECT_EQ(DropInPath(in_), dropin);
  std::string main1 = Read(in_.config), drop1 = Read(dropin);
  EXPECT_NE(main1.find(dropin), std::string::npos);
  auto st = InspectContainerd(in_.config);
  EXPECT_TRUE(st.configured) << st.detail;
  EXPECT_NE(st.detail.find(dropin), std::string::npos) << st.detail;
  EXPECT_EQ(st.detail.find("again"), std::string::npos) << st.detail;
  struct stat sb;
  ASSERT_EQ(::stat(in_.config.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);  // the user's mode is kept

  // Idempotent.
  ASSERT_TRUE(InstallContainerd(in_).ok());
  EXPECT_EQ(Read(in_.config), main1);
  EXPECT_EQ(Read(dropin), drop1);

  // The main CRI section changed afterwards: check says so.
  std::string edited = main1;
  edited.replace(edited.find("localhost/pause:3.6"), 19, "localhost/pause:9.9");
  ASSERT_TRUE(WriteFile(in_.config, edited).ok());
  st = InspectContainerd(in_.config);
  EXPECT_TRUE(st.configured);
  EXPECT_NE(st.detail.find("install --containerd again"), std::string::npos) << st.detail;

  ASSERT_TRUE(WriteFile(in_.config, main1).ok());
  ASSERT_TRUE(UninstallContainerd(in_).ok());
  EXPECT_EQ(Read(in_.config), kUserConfig);
  EXPECT_EQ(Read(dropin), "<missing>");
  EXPECT_FALSE(InspectContainerd(in_.config).configured);
  ASSERT_TRUE(UninstallContainerd(in_).ok());  // again: nothing to do
}

TEST_F(ContainerdFiles, InstallWithoutAMainConfigCreatesOne) {
  in_.dropin = dir_ + "/d/cask-x.toml";
  ASSERT_TRUE(InstallContainerd(in_).ok());
  auto t = Parse(Read(in_.config));
  EXPECT_EQ(t["version"].value<int64_t>(), 2);
  EXPECT_EQ(t["imports"][0].value<std::string>(), in_.dropin);
  auto st = InspectContainerd(in_.config);
  EXPECT_TRUE(st.configured) << st.detail;
  // The default runc entry the drop-in adds is not a difference.
  EXPECT_EQ(st.detail.find("again"), std::string::npos) << st.detail;
}

TEST_F(ContainerdFiles, CheckFollowsRelativeAndGlobImportsInOrder) {
  ASSERT_TRUE(MkdirAll(dir_ + "/d").ok());
  ASSERT_TRUE(WriteFile(in_.config, "version = 2\nimports = [\"d/*.toml\"]\n").ok());
  ASSERT_TRUE(WriteFile(dir_ + "/d/a.toml",
                        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.cask]\n"
                        "runtime_type = \"io.containerd.cask.v2\"\n")
                  .ok());
  auto st = InspectContainerd(in_.config);
  EXPECT_TRUE(st.configured) << st.detail;
  // A later import's CRI section replaces the earlier one: cask is gone.
  ASSERT_TRUE(WriteFile(dir_ + "/d/b.toml",
                        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"x\"\n")
                  .ok());
  st = InspectContainerd(in_.config);
  EXPECT_FALSE(st.configured);
  EXPECT_NE(st.detail.find("b.toml"), std::string::npos) << st.detail;
  // A wrong runtime type is named.
  ASSERT_TRUE(WriteFile(dir_ + "/d/b.toml",
                        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.cask]\n"
                        "runtime_type = \"io.containerd.runc.v2\"\n")
                  .ok());
  st = InspectContainerd(in_.config);
  EXPECT_FALSE(st.configured);
  EXPECT_NE(st.detail.find("io.containerd.runc.v2"), std::string::npos) << st.detail;
}

TEST_F(ContainerdFiles, CheckReportsAMissingOrBrokenConfig) {
  auto st = InspectContainerd(dir_ + "/none.toml");
  EXPECT_FALSE(st.configured);
  EXPECT_NE(st.detail.find("none.toml"), std::string::npos);
  ASSERT_TRUE(WriteFile(in_.config, "version = 2\nimports = [\"/nonexistent/x.toml\"]\n").ok());
  st = InspectContainerd(in_.config);
  EXPECT_FALSE(st.configured);
  EXPECT_NE(st.detail.find("/nonexistent/x.toml"), std::string::npos) << st.detail;
}

}  // namespace
}  // namespace cask::runtime
