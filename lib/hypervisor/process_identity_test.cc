#include "lib/hypervisor/process_identity.h"

#include <signal.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lib/base/process.h"

namespace cask::hypervisor {
namespace {

TEST(ProcStatTest, ParsesAfterTheLastParenthesis) {
  // A command name can hold spaces and ')': fields count from the last ')'.
  std::string text = "1234 (evil) 1 2 3 (x) R 1 1234 1234 0 -1 4194368 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 200";
  auto st = ParseProcStat(text);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(st->state, 'R');
  EXPECT_EQ(st->flags, 4194368u);
  EXPECT_EQ(st->start_time, 987654u);
}

TEST(ProcStatTest, RejectsMalformed) {
  for (const char* bad : {"", "1 (x", "1 (x) R 1 2", "1 (x) RR 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19",
                          "1 (x) R 1 2 3 4 5 z 7 8 9 10 11 12 13 14 15 16 17 18 19 20"}) {
    EXPECT_FALSE(ParseProcStat(bad).ok()) << bad;
  }
}

TEST(ProcessIdentityTest, SelfIsRunning) {
  auto id = IdentityOf(::getpid());
  ASSERT_TRUE(id.ok());
  EXPECT_GT(id->start_time, 0u);
  EXPECT_EQ(CheckLiveness(*id), Liveness::kRunning);
  EXPECT_TRUE(OpenIdentified(*id).ok());
}

TEST(ProcessIdentityTest, AStartTimeMismatchIsNeverSignalled) {
  auto child = Spawn({"/bin/sleep", "100"}, {});
  ASSERT_TRUE(child.ok());
  auto id = IdentityOf(child->pid());
  ASSERT_TRUE(id.ok());
  ProcessIdentity other = *id;
  other.start_time += 1;  // what a reused pid looks like
  EXPECT_EQ(OpenIdentified(other).error().code(), Code::kNotFound);
  EXPECT_EQ(CheckLiveness(other), Liveness::kGone);
  auto st = SignalIdentified(other, SIGKILL);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kNotFound);
  auto still = child->TryWait();
  ASSERT_TRUE(still.ok());
  EXPECT_FALSE(still->has_value()) << "the child was killed through a mismatched identity";

  // The right identity: signalled, then a zombie (exiting), then gone.
  EXPECT_EQ(CheckLiveness(*id), Liveness::kRunning);
  ASSERT_TRUE(SignalIdentified(*id, SIGKILL).ok());
  EXPECT_TRUE(WaitExited(*id, std::chrono::milliseconds(5000)));
  EXPECT_EQ(CheckLiveness(*id), Liveness::kExiting);
  EXPECT_EQ(*child->Wait(), 128 + SIGKILL);
  EXPECT_EQ(CheckLiveness(*id), Liveness::kGone);
  EXPECT_TRUE(WaitExited(*id, std::chrono::milliseconds(1)));
}

}  // namespace
}  // namespace cask::hypervisor
