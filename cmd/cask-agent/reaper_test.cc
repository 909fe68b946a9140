#include "cmd/cask-agent/reaper.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

namespace cask::agent {
namespace {

class ReaperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, nullptr), 0);
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }
};

// Collects one exit event delivered from any thread.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<ExitEvent> ev;

  Reaper::Callback Callback() {
    return [this](const ExitEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      ev = e;
      cv.notify_all();
    };
  }
  std::optional<ExitEvent> WaitFor(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, timeout, [&] { return ev.has_value(); });
    return ev;
  }
};

pid_t ForkExit(int code, int delay_ms = 0) {
  pid_t pid = fork();
  if (pid == 0) {
    if (delay_ms) usleep(static_cast<useconds_t>(delay_ms) * 1000);
    _exit(code);
  }
  return pid;
}

bool WaitUnclaimed(const Reaper& r, size_t n) {
  for (int i = 0; i < 3000 && r.unclaimed_count() < n; ++i) usleep(10000);  // a hang guard only
  return r.unclaimed_count() >= n;
}

TEST_F(ReaperTest, RefusesWithoutBlockedSigchld) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  std::optional<Status> st;
  std::thread t([&] {
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    Reaper r;
    st = r.Start();
  });
  t.join();
  ASSERT_TRUE(st.has_value());
  EXPECT_FALSE(st->ok());
}

TEST_F(ReaperTest, WatchedExitIsDelivered) {
  Reaper r;
  ASSERT_TRUE(r.Start().ok());
  uint64_t mark = r.Mark();
  pid_t pid = ForkExit(3, 50);
  Collector c;
  r.Watch(pid, mark, c.Callback());
  auto ev = c.WaitFor(std::chrono::seconds(5));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->pid, pid);
  EXPECT_EQ(ev->status, 3);
  EXPECT_GT(ev->exited_at_ns, 0u);
}

TEST_F(ReaperTest, SignalDeathIs128PlusSignal) {
  Reaper r;
  ASSERT_TRUE(r.Start().ok());
  uint64_t mark = r.Mark();
  pid_t pid = fork();
  if (pid == 0) {
    pause();
    _exit(0);
  }
  Collector c;
  r.Watch(pid, mark, c.Callback());
  kill(pid, SIGKILL);
  auto ev = c.WaitFor(std::chrono::seconds(5));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->status, 128 + SIGKILL);
}

TEST_F(ReaperTest, RegistrationAfterExitStillDelivers) {
  Reaper r;
  ASSERT_TRUE(r.Start().ok());
  uint64_t mark = r.Mark();
  pid_t pid = ForkExit(5);
  ASSERT_TRUE(WaitUnclaimed(r, 1));
  Collector c;
  r.Watch(pid, mark, c.Callback());
  auto ev = c.WaitFor(std::chrono::milliseconds(0));  // delivered synchronously
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->status, 5);
  EXPECT_EQ(r.unclaimed_count(), 0u);
}

TEST_F(ReaperTest, StaleExitOfAnEarlierProcessIsNotMatched) {
  Reaper r;
  ASSERT_TRUE(r.Start().ok());
  pid_t pid = ForkExit(7);
  ASSERT_TRUE(WaitUnclaimed(r, 1));
  // A process forked after this mark cannot be the one that exited.
  uint64_t mark = r.Mark();
  Collector c;
  r.Watch(pid, mark, c.Callback());
  EXPECT_FALSE(c.WaitFor(std::chrono::milliseconds(100)).has_value());
  r.Unwatch(pid);
}

TEST_F(ReaperTest, OrphansAreReapedAndBounded) {
  Reaper r(Reaper::Options{.max_unclaimed = 2});
  ASSERT_TRUE(r.Start().ok());
  // A child that leaves an orphan grandchild behind (reparented to us, the
  // subreaper), plus one more plain child: three exits, two kept.
  pid_t pid = fork();
  if (pid == 0) {
    if (fork() == 0) {
      usleep(100000);
      _exit(9);
    }
    _exit(0);
  }
  ForkExit(1);
  for (int i = 0; i < 3000; ++i) {  // a hang guard only
    usleep(10000);
    if (r.Mark() >= 3) break;
  }
  EXPECT_EQ(r.Mark(), 3u);
  EXPECT_EQ(r.unclaimed_count(), 2u);
}

}  // namespace
}  // namespace cask::agent
