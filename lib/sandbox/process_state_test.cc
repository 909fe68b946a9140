#include "lib/sandbox/process_state.h"

#include <gtest/gtest.h>

namespace cask::sandbox {
namespace {

using S = ProcessState;
using O = ProcessOp;

TEST(ProcessState, HappyPath) {
  auto s = Transition(S::kCreated, O::kStart, "task");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, S::kRunning);
  EXPECT_EQ(*Transition(S::kRunning, O::kPause, "task"), S::kPaused);
  EXPECT_EQ(*Transition(S::kPaused, O::kResume, "task"), S::kRunning);
  EXPECT_EQ(*Transition(S::kRunning, O::kExit, "task"), S::kStopped);
  EXPECT_EQ(*Transition(S::kStopped, O::kDelete, "task"), S::kDeleted);
  EXPECT_EQ(*Transition(S::kCreated, O::kDelete, "task"), S::kDeleted);  // never started
  EXPECT_EQ(*Transition(S::kPaused, O::kExit, "task"), S::kStopped);     // killed while paused
}

TEST(ProcessState, PreciseMessages) {
  auto p = Transition(S::kCreated, O::kPause, "task");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(p.error().ToString(), "cannot pause task in created state");

  auto st = Transition(S::kRunning, O::kStart, "exec");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().ToString(), "cannot start exec in running state");

  auto del = Transition(S::kRunning, O::kDelete, "task");
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(del.error().ToString(), "cannot delete a running task");

  auto delp = Transition(S::kPaused, O::kDelete, "task");
  ASSERT_FALSE(delp.ok());
  EXPECT_EQ(delp.error().ToString(), "cannot delete task in paused state");

  EXPECT_EQ(Transition(S::kStopped, O::kResume, "task").error().ToString(), "cannot resume task in stopped state");
  EXPECT_EQ(Transition(S::kStopped, O::kExec, "task").error().ToString(), "cannot exec in task in stopped state");
}

TEST(ProcessState, Kill) {
  EXPECT_EQ(*Transition(S::kCreated, O::kKill, "task"), S::kCreated);
  EXPECT_EQ(*Transition(S::kRunning, O::kKill, "task"), S::kRunning);
  EXPECT_EQ(*Transition(S::kPaused, O::kKill, "task"), S::kPaused);
  auto k = Transition(S::kStopped, O::kKill, "task");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error().code(), Code::kNotFound);  // containerd tolerates NOT_FOUND here
}

TEST(ProcessState, DeletedIsNotFound) {
  for (auto op : {O::kStart, O::kPause, O::kResume, O::kKill, O::kExit, O::kDelete, O::kExec}) {
    auto r = Transition(S::kDeleted, op, "task");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), Code::kNotFound);
  }
}

TEST(ProcessState, ExecAndUpdate) {
  EXPECT_TRUE(Transition(S::kRunning, O::kExec, "task").ok());
  EXPECT_FALSE(Transition(S::kCreated, O::kExec, "task").ok());
  EXPECT_FALSE(Transition(S::kPaused, O::kExec, "task").ok());
  EXPECT_TRUE(Transition(S::kCreated, O::kUpdate, "task").ok());
  EXPECT_TRUE(Transition(S::kPaused, O::kUpdate, "task").ok());
  EXPECT_FALSE(Transition(S::kStopped, O::kUpdate, "task").ok());
  EXPECT_TRUE(Transition(S::kStopped, O::kCloseIo, "task").ok());
}

}  // namespace
}  // namespace cask::sandbox
