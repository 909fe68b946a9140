#include "cmd/cask-agent/oom.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <thread>

#include "lib/base/fs.h"

namespace cask::agent {
namespace {

TEST(Oom, ParseCount) {
  EXPECT_EQ(ParseOomKillCount("low 0\nhigh 0\nmax 3\noom 2\noom_kill 7\noom_group_kill 0\n"), 7u);
  EXPECT_EQ(ParseOomKillCount("low 0\n"), 0u);
  EXPECT_EQ(ParseOomKillCount(""), 0u);
}

// inotify works on regular files too, so a fake memory.events exercises the
// whole path: watch, modification, counter comparison, queue.
TEST(Oom, QueuesOnlyWhenOomKillGrows) {
  char tmpl[] = "/tmp/cask-oom-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/memory.events";
  ASSERT_TRUE(WriteFile(path, "oom 0\noom_kill 1\n").ok());
  OomWatcher w;
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(w.Watch("c1", path).ok());

  WaitLimits short_wait;
  short_wait.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  // Rewriting without growth queues nothing.
  ASSERT_TRUE(WriteFile(path, "oom 1\noom_kill 1\n").ok());
  auto none = w.Next(short_wait);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), Code::kDeadlineExceeded);

  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(WriteFile(path, "oom 2\noom_kill 2\n").ok());
  });
  WaitLimits wait;
  wait.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  auto id = w.Next(wait);
  writer.join();
  ASSERT_TRUE(id.ok()) << id.error().ToString();
  EXPECT_EQ(*id, "c1");

  w.Unwatch("c1");
  ASSERT_TRUE(WriteFile(path, "oom 3\noom_kill 3\n").ok());
  WaitLimits cancelled;
  cancelled.cancelled = [] { return true; };
  auto c = w.Next(cancelled);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kUnavailable);
  w.Stop();
  ASSERT_TRUE(RemoveAll(tmpl).ok());
}

}  // namespace
}  // namespace cask::agent
