#include "lib/sys/pidfd.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace cask::sys {
namespace {

pid_t Sleeper() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::pause();
    ::_exit(0);
  }
  return pid;
}

TEST(Pidfd, SignalWaitAndExit) {
  pid_t pid = Sleeper();
  ASSERT_GT(pid, 0);
  auto p = Pidfd::Open(pid);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->pid(), pid);
  EXPECT_TRUE(p->Alive());
  EXPECT_NE(::fcntl(p->get(), F_GETFD) & FD_CLOEXEC, 0);
  auto early = p->WaitExited(std::chrono::milliseconds(0));
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(*early);

  ASSERT_TRUE(p->Signal(SIGKILL).ok());
  auto exited = p->WaitExited(std::chrono::seconds(10));
  ASSERT_TRUE(exited.ok());
  EXPECT_TRUE(*exited);
  EXPECT_FALSE(p->Alive());  // exited, not yet reaped
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  // After the reap the pidfd still names the dead process, never a reuse.
  auto late = p->Signal(SIGTERM);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().sys_errno(), ESRCH);
}

TEST(Pidfd, OpenErrors) {
  EXPECT_EQ(Pidfd::Open(0).error().code(), Code::kInvalidArgument);
  pid_t pid = Sleeper();
  ASSERT_GT(pid, 0);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  auto gone = Pidfd::Open(pid);  // reaped: no such process (unless reused at once)
  if (!gone.ok()) {
    EXPECT_EQ(gone.error().sys_errno(), ESRCH);
  }
}

TEST(Pidfd, EmptyAndReset) {
  Pidfd none;
  EXPECT_FALSE(none.valid());
  EXPECT_FALSE(none.Alive());
  EXPECT_EQ(none.Signal(0).error().code(), Code::kFailedPrecondition);
  EXPECT_FALSE(none.WaitExited(std::chrono::milliseconds(0)).ok());
  auto self = Pidfd::Open(::getpid());
  ASSERT_TRUE(self.ok());
  Pidfd moved = std::move(*self);
  EXPECT_TRUE(moved.Alive());
  moved.Reset();
  EXPECT_FALSE(moved.valid());
  EXPECT_EQ(moved.pid(), -1);
}

}  // namespace
}  // namespace cask::sys
