#include "cmd/cask-agent/reply_coalescer.h"

#include <gtest/gtest.h>

namespace cask::agent {
namespace {

using Clock = ReplyCoalescer::Clock;
using std::chrono::microseconds;

constexpr size_t kMin = 64 * 1024;
const microseconds kDelay{2000};

ReplyCoalescer Make() { return ReplyCoalescer(ReplyCoalescer::Options{kMin, kDelay}); }

ReplyCoalescer::Pending Output(size_t bytes, size_t limit = 0) {
  ReplyCoalescer::Pending p;
  p.output_bytes = bytes;
  p.limit = limit;
  return p;
}

TEST(ReplyCoalescer, SmallOutputIsHeldUntilTheBoundAfterItWasFirstSeen) {
  ReplyCoalescer c = Make();
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::seconds(100);
  auto d = c.Decide(Output(4096), t0);
  EXPECT_FALSE(d.reply);
  ASSERT_TRUE(d.hold);
  EXPECT_EQ(d.until, t0 + kDelay);
  // More output arrives: still below the threshold, and the bound does not
  // move with it (the oldest held byte sets it).
  d = c.Decide(Output(8192), t0 + microseconds(1500));
  EXPECT_TRUE(d.hold);
  EXPECT_EQ(d.until, t0 + kDelay);
  // At the bound it goes, whatever the size.
  d = c.Decide(Output(12288), t0 + kDelay);
  EXPECT_TRUE(d.reply);
  EXPECT_FALSE(d.hold);
}

TEST(ReplyCoalescer, EnoughOutputGoesAtOnce) {
  ReplyCoalescer c = Make();
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::seconds(1);
  EXPECT_TRUE(c.Decide(Output(kMin), t0).reply);
  EXPECT_TRUE(c.Decide(Output(kMin * 4), t0).reply);
  // Held output that grows past the threshold goes before the bound.
  ReplyCoalescer h = Make();
  EXPECT_TRUE(h.Decide(Output(100), t0).hold);
  EXPECT_TRUE(h.Decide(Output(kMin + 1), t0 + microseconds(10)).reply);
}

TEST(ReplyCoalescer, AReplyLimitBelowTheThresholdIsEnough) {
  // The host asked for replies of at most 16 KiB: 16 KiB is a full reply,
  // holding it would only add delay.
  ReplyCoalescer c = Make();
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::seconds(1);
  EXPECT_TRUE(c.Decide(Output(16 * 1024, 16 * 1024), t0).reply);
  EXPECT_TRUE(c.Decide(Output(1024, 16 * 1024), t0).hold);
}

TEST(ReplyCoalescer, UrgentEventsGoAtOnceWithHeldOutput) {
  ReplyCoalescer c = Make();
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::seconds(1);
  EXPECT_TRUE(c.Decide(Output(10), t0).hold);
  ReplyCoalescer::Pending p = Output(10);
  p.urgent = true;  // e.g. the process exited, or its stream ended
  auto d = c.Decide(p, t0 + microseconds(1));
  EXPECT_TRUE(d.reply);
  EXPECT_FALSE(d.hold);
  // Urgent with no output at all (an exit alone) too.
  ReplyCoalescer::Pending exit_only;
  exit_only.urgent = true;
  EXPECT_TRUE(Make().Decide(exit_only, t0).reply);
}

TEST(ReplyCoalescer, SentStartsANewHold) {
  ReplyCoalescer c = Make();
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::seconds(1);
  EXPECT_TRUE(c.Decide(Output(10), t0).hold);
  EXPECT_TRUE(c.Decide(Output(10), t0 + kDelay).reply);
  c.Sent();
  EXPECT_FALSE(c.held_since().has_value());
  const Clock::time_point t1 = t0 + kDelay + microseconds(500);
  auto d = c.Decide(Output(10), t1);
  ASSERT_TRUE(d.hold);
  EXPECT_EQ(d.until, t1 + kDelay);
}

TEST(ReplyCoalescer, NothingPendingIsNotHeldAndEndsAHold) {
  ReplyCoalescer c = Make();
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::seconds(1);
  auto d = c.Decide(Output(0), t0);
  EXPECT_FALSE(d.hold);
  EXPECT_FALSE(c.held_since().has_value());
  EXPECT_TRUE(c.Decide(Output(10), t0).hold);
  // The output went away (its process was removed): the hold ends, and new
  // output later gets its own full bound.
  EXPECT_FALSE(c.Decide(Output(0), t0 + microseconds(100)).hold);
  const Clock::time_point t1 = t0 + microseconds(1900);
  d = c.Decide(Output(10), t1);
  ASSERT_TRUE(d.hold);
  EXPECT_EQ(d.until, t1 + kDelay);
}

}  // namespace
}  // namespace cask::agent
