#include "cmd/cask-runtime/run_spec.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "lib/base/fs.h"
#include "lib/oci/parse.h"

namespace cask::runtime {
namespace {

class RunSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-run-spec-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(MkdirAll(dir_ + "/bundle/rootfs/bin").ok());
  }
  void TearDown() override { ASSERT_TRUE(RemoveAll(dir_).ok()); }
  void WriteConfig(const std::string& json) { ASSERT_TRUE(WriteFile(dir_ + "/bundle/config.json", json).ok()); }
  std::string dir_;
};

TEST_F(RunSpecTest, RootfsUsesTheDefaultSpecWithAWritableRoot) {
  RunRequest r;
  r.rootfs = dir_ + "/bundle/rootfs";
  r.command = {"sh", "-c", "exit 7"};
  r.tty = true;
  auto pc = PrepareContainer(r);
  ASSERT_TRUE(pc.ok()) << pc.error().ToString();
  EXPECT_EQ(pc->rootfs, dir_ + "/bundle/rootfs");
  EXPECT_FALSE(pc->readonly_rootfs);
  ASSERT_TRUE(pc->spec.process);
  EXPECT_EQ(pc->spec.process->args, r.command);
  EXPECT_TRUE(pc->spec.process->terminal);
  EXPECT_FALSE(pc->spec.linux->resources->memory.has_value());
}

TEST_F(RunSpecTest, MemoryCpusAndHostnameAreApplied) {
  RunRequest r;
  r.rootfs = dir_ + "/bundle/rootfs";
  r.command = {"true"};
  r.memory_mib = 64;
  r.cpus = 2;
  r.hostname = "box";
  auto pc = PrepareContainer(r);
  ASSERT_TRUE(pc.ok()) << pc.error().ToString();
  EXPECT_EQ(pc->spec.hostname, "box");
  ASSERT_TRUE(pc->spec.linux->resources->memory);
  EXPECT_EQ(*pc->spec.linux->resources->memory->limit, 64 * 1024 * 1024);
  ASSERT_TRUE(pc->spec.linux->resources->cpu);
  EXPECT_EQ(*pc->spec.linux->resources->cpu->quota, 200000);
  EXPECT_EQ(*pc->spec.linux->resources->cpu->period, 100000u);
}

TEST_F(RunSpecTest, BadRequestsNameTheProblem) {
  RunRequest none;
  none.command = {"true"};
  EXPECT_NE(PrepareContainer(none).error().ToString().find("--rootfs"), std::string::npos);

  RunRequest missing;
  missing.rootfs = dir_ + "/nope";
  missing.command = {"true"};
  auto e = PrepareContainer(missing);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code(), Code::kNotFound);
  EXPECT_NE(e.error().ToString().find(dir_ + "/nope"), std::string::npos) << e.error().ToString();

  RunRequest nocmd;
  nocmd.rootfs = dir_ + "/bundle/rootfs";
  EXPECT_NE(PrepareContainer(nocmd).error().ToString().find("command is required"), std::string::npos);

  RunRequest file_root;
  ASSERT_TRUE(WriteFile(dir_ + "/afile", "x").ok());
  file_root.rootfs = dir_ + "/afile";
  file_root.command = {"true"};
  EXPECT_NE(PrepareContainer(file_root).error().ToString().find("not a directory"), std::string::npos);

  RunRequest mem;
  mem.rootfs = dir_ + "/bundle/rootfs";
  mem.command = {"true"};
  mem.memory_mib = 1;
  EXPECT_NE(PrepareContainer(mem).error().ToString().find("--memory"), std::string::npos);

  RunRequest cpus;
  cpus.rootfs = dir_ + "/bundle/rootfs";
  cpus.command = {"true"};
  cpus.cpus = 0;
  EXPECT_NE(PrepareContainer(cpus).error().ToString().find("--cpus"), std::string::npos);
}

TEST_F(RunSpecTest, BundleRootIsRelativeToTheBundleAndCommandOverrides) {
  oci::Spec s = oci::DefaultSpec({"sh"}, false);
  WriteConfig(oci::ToJson(s));
  RunRequest r;
  r.bundle = dir_ + "/bundle";
  r.command = {"echo", "hi"};
  auto pc = PrepareContainer(r);
  ASSERT_TRUE(pc.ok()) << pc.error().ToString();
  EXPECT_EQ(pc->rootfs, dir_ + "/bundle/rootfs");
  EXPECT_TRUE(pc->readonly_rootfs);  // runc spec's default
  EXPECT_EQ(pc->spec.process->args, (std::vector<std::string>{"echo", "hi"}));
  EXPECT_EQ(pc->spec.hostname, "runc");

  RunRequest keep;
  keep.bundle = dir_ + "/bundle";
  auto pc2 = PrepareContainer(keep);
  ASSERT_TRUE(pc2.ok()) << pc2.error().ToString();
  EXPECT_EQ(pc2->spec.process->args, (std::vector<std::string>{"sh"}));
}

TEST_F(RunSpecTest, BadBundlesNameTheFileAndField) {
  RunRequest r;
  r.bundle = dir_ + "/bundle";
  auto nofile = PrepareContainer(r);
  ASSERT_FALSE(nofile.ok());
  EXPECT_NE(nofile.error().ToString().find("config.json"), std::string::npos) << nofile.error().ToString();

  WriteConfig("{\"ociVersion\": \"1.0.2\", \"process\": ");
  auto malformed = PrepareContainer(r);
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().code(), Code::kInvalidArgument);
  EXPECT_NE(malformed.error().ToString().find("config.json"), std::string::npos) << malformed.error().ToString();

  WriteConfig(R"({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": [], "cwd": "/"}})");
  auto invalid = PrepareContainer(r);
  ASSERT_FALSE(invalid.ok());
  EXPECT_NE(invalid.error().ToString().find("process.args"), std::string::npos) << invalid.error().ToString();

  WriteConfig(R"({"ociVersion": "1.0.2", "root": {"path": "nothere"}, "process": {"args": ["sh"], "cwd": "/"}})");
  auto noroot = PrepareContainer(r);
  ASSERT_FALSE(noroot.ok());
  EXPECT_NE(noroot.error().ToString().find("nothere"), std::string::npos) << noroot.error().ToString();

  WriteConfig(R"({"ociVersion": "1.0.2", "root": {"path": "rootfs"}})");
  auto noproc = PrepareContainer(r);
  ASSERT_FALSE(noproc.ok());
  EXPECT_NE(noproc.error().ToString().find("process"), std::string::npos) << noproc.error().ToString();
}

}  // namespace
}  // namespace cask::runtime
