#include "lib/container/seccomp.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace cask::container {
namespace {

oci::Seccomp Profile() {
  oci::Seccomp p;
  p.default_action = "SCMP_ACT_ALLOW";
  p.architectures = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"};
  oci::SeccompSyscall deny;
  deny.names = {"mkdir", "mkdirat", "not_a_real_syscall"};
  deny.action = "SCMP_ACT_ERRNO";
  deny.errno_ret = 42;
  p.syscalls.push_back(deny);
  oci::SeccompSyscall personality;
  personality.names = {"personality"};
  personality.action = "SCMP_ACT_ERRNO";
  personality.args = {{0, 0xffffffff, 0, "SCMP_CMP_NE"}};
  p.syscalls.push_back(personality);
  oci::SeccompSyscall same;  // equal to the default: skipped
  same.names = {"read"};
  same.action = "SCMP_ACT_ALLOW";
  p.syscalls.push_back(same);
  return p;
}

TEST(SeccompTest, PfcMentionsTheRules) {
  auto pfc = SeccompPfc(Profile());
  ASSERT_TRUE(pfc.ok()) << pfc.error().ToString();
  EXPECT_NE(pfc->find("mkdirat"), std::string::npos) << *pfc;
  EXPECT_NE(pfc->find("ERRNO(42)"), std::string::npos) << *pfc;
  EXPECT_NE(pfc->find("personality"), std::string::npos) << *pfc;
  EXPECT_NE(pfc->find("x86"), std::string::npos) << *pfc;
}

TEST(SeccompTest, CompilesToBpf) {
  auto prog = CompileSeccomp(Profile());
  ASSERT_TRUE(prog.ok()) << prog.error().ToString();
  EXPECT_GT(prog->instructions.size(), 5u);
  EXPECT_EQ(prog->flags, 0u);
}

TEST(SeccompTest, RepeatedArgumentIndexBecomesSeparateRules) {
  oci::Seccomp p;
  p.default_action = "SCMP_ACT_ERRNO";
  oci::SeccompSyscall s;
  s.names = {"clone"};
  s.action = "SCMP_ACT_ALLOW";
  s.args = {{0, 1, 0, "SCMP_CMP_EQ"}, {0, 2, 0, "SCMP_CMP_EQ"}};
  p.syscalls.push_back(s);
  auto prog = CompileSeccomp(p);
  EXPECT_TRUE(prog.ok()) << prog.error().ToString();
}

TEST(SeccompTest, BadProfilesAreInvalidArgument) {
  oci::Seccomp p = Profile();
  p.default_action = "SCMP_ACT_PANIC";
  auto r = CompileSeccomp(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().ToString().find("SCMP_ACT_PANIC"), std::string::npos);

  p = Profile();
  p.syscalls[1].args[0].op = "SCMP_CMP_ALMOST";
  EXPECT_FALSE(CompileSeccomp(p).ok());
  p = Profile();
  p.architectures = {"SCMP_ARCH_PDP11"};
  EXPECT_FALSE(CompileSeccomp(p).ok());
  p = Profile();
  p.flags = {"SECCOMP_FILTER_FLAG_NOPE"};
  EXPECT_FALSE(CompileSeccomp(p).ok());
  p = Profile();
  p.syscalls[0].action = "SCMP_ACT_NOTIFY";
  EXPECT_FALSE(CompileSeccomp(p).ok());
}

TEST(SeccompTest, LoadedFilterDeniesWithErrno) {
  auto prog = CompileSeccomp(Profile());
  ASSERT_TRUE(prog.ok());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (!LoadSeccomp(*prog).ok()) _exit(2);
    if (mkdir("/tmp/cask-seccomp-test-should-not-exist", 0755) == 0) _exit(3);
    _exit(errno == 42 ? 0 : 4);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

}  // namespace
}  // namespace cask::container
