// CheckExecutable: the create-time lookup of a container's program.
#include "lib/container/process.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "lib/base/error.h"
#include "lib/base/fs.h"

namespace cask::container {
namespace {

class CheckExecutableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-checkexec-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(mkdir((dir_ + "/bin").c_str(), 0755), 0);
    ASSERT_TRUE(WriteFile(dir_ + "/bin/tool", "#!/bin/sh\n").ok());
    ASSERT_EQ(chmod((dir_ + "/bin/tool").c_str(), 0755), 0);
    ASSERT_TRUE(WriteFile(dir_ + "/bin/data", "x").ok());
    ASSERT_EQ(chmod((dir_ + "/bin/data").c_str(), 0644), 0);
  }
  void TearDown() override { (void)RemoveAll(dir_); }
  std::string dir_;
};

TEST_F(CheckExecutableTest, FindsTheProgramThroughPath) {
  auto c = ExecCandidates("tool", {"PATH=/nonexistent:" + dir_ + "/bin"});
  ASSERT_EQ(c.size(), 2u);
  EXPECT_TRUE(CheckExecutable("tool", c).ok());
  EXPECT_TRUE(CheckExecutable(dir_ + "/bin/tool", ExecCandidates(dir_ + "/bin/tool", {})).ok());
}

TEST_F(CheckExecutableTest, MissingProgramIsNotFound) {
  Status st = CheckExecutable("nope", ExecCandidates("nope", {"PATH=" + dir_ + "/bin"}));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ExecFailureOf(st.error()), ExecFailure::kNotFound);
  EXPECT_NE(st.error().ToString().find("executable \"nope\" in $PATH"), std::string::npos) << st.error().ToString();
  // A relative path with a slash resolves against the cwd, as execve does.
  st = CheckExecutable("./bin/tool", ExecCandidates("./bin/tool", {}));
  ASSERT_FALSE(st.ok());  // the test's cwd is not dir_
  EXPECT_EQ(ExecFailureOf(st.error()), ExecFailure::kNotFound);
}

TEST_F(CheckExecutableTest, NonExecutableFileOrDirectoryIsPermissionDenied) {
  // Even root passes X_OK only when some x bit is set: a 0644 file fails.
  Status st = CheckExecutable("data", ExecCandidates("data", {"PATH=" + dir_ + "/bin"}));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ExecFailureOf(st.error()), ExecFailure::kPermissionDenied) << st.error().ToString();
  st = CheckExecutable(dir_ + "/bin", {dir_ + "/bin"});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ExecFailureOf(st.error()), ExecFailure::kPermissionDenied);
}

TEST_F(CheckExecutableTest, AnExecutableLaterInPathWinsOverAnEarlierNonExecutable) {
  ASSERT_EQ(mkdir((dir_ + "/b2").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(dir_ + "/b2/data", "#!/bin/sh\n").ok());
  ASSERT_EQ(chmod((dir_ + "/b2/data").c_str(), 0755), 0);
  EXPECT_TRUE(CheckExecutable("data", ExecCandidates("data", {"PATH=" + dir_ + "/bin:" + dir_ + "/b2"})).ok());
}

}  // namespace
}  // namespace cask::container
