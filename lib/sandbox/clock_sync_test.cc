#include "lib/sandbox/clock_sync.h"

#include <atomic>
#include <vector>

#include <gtest/gtest.h>

namespace cask::sandbox {
namespace {

TEST(ClockSyncTest, SetsTheHostTimeRepeatedlyUntilDestroyed) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::chrono::system_clock::time_point> calls;
  {
    ClockSync sync(
        [&](std::chrono::system_clock::time_point t) {
          std::lock_guard l(mu);
          calls.push_back(t);
          cv.notify_all();
          return Ok();
        },
        std::chrono::milliseconds(1), Logger());
    std::unique_lock l(mu);
    cv.wait(l, [&] { return calls.size() >= 3; });
  }
  std::lock_guard l(mu);
  size_t n = calls.size();
  ASSERT_GE(n, 3u);
  for (size_t i = 1; i < n; ++i) EXPECT_LE(calls[i - 1], calls[i]);
  // The times are the host's.
  auto now = std::chrono::system_clock::now();
  EXPECT_LE(calls.back(), now);
}

TEST(ClockSyncTest, FailuresDoNotStopIt) {
  std::atomic<int> calls{0};
  {
    ClockSync sync(
        [&](std::chrono::system_clock::time_point) -> Status {
          ++calls;
          return Error::Unavailable("agent gone");
        },
        std::chrono::milliseconds(1), Logger());
    while (calls.load() < 5) std::this_thread::yield();
    EXPECT_EQ(sync.synced(), 0u);
  }
}

TEST(ClockSyncTest, DestructionDoesNotWaitForTheInterval) {
  ClockSync sync([](std::chrono::system_clock::time_point) { return Ok(); }, std::chrono::hours(1), Logger());
  // Destroyed at once; a test runner timeout would catch a wait of an hour.
}

}  // namespace
}  // namespace cask::sandbox
