#include "lib/rpc/handler_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>

namespace cask::rpc::internal {
namespace {

using namespace std::chrono_literals;

// A gate the tasks wait on until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Wait() {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return open; });
  }
  void Open() {
    std::lock_guard<std::mutex> l(mu);
    open = true;
    cv.notify_all();
  }
};

TEST(HandlerPool, GrowsOnDemandUpToMax) {
  HandlerPool pool(4);
  Gate gate;
  std::atomic<int> started{0}, finished{0};
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(pool.Submit([&] {
      ++started;
      gate.Wait();
      ++finished;
    }));
  }
  auto until = std::chrono::steady_clock::now() + 5s;
  while (started.load() < 4 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(started.load(), 4);  // two wait for a free thread
  EXPECT_EQ(pool.thread_count(), 4u);
  gate.Open();
  until = std::chrono::steady_clock::now() + 5s;
  while (finished.load() < 6 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(finished.load(), 6);
}

TEST(HandlerPool, ReusesIdleThreads) {
  HandlerPool pool(8);
  for (int i = 0; i < 20; ++i) {
    std::promise<void> done;
    ASSERT_TRUE(pool.Submit([&] { done.set_value(); }));
    ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
    // The thread is back waiting only once it left the task: until then a
    // Submit rightly starts another one (a loaded machine may take a while).
    auto until = std::chrono::steady_clock::now() + 30s;
    while (pool.idle_count() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(pool.thread_count(), 1u);
}

TEST(HandlerPool, IdleThreadsRetire) {
  HandlerPool pool(8, 50ms);
  std::promise<void> done;
  ASSERT_TRUE(pool.Submit([&] { done.set_value(); }));
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  auto until = std::chrono::steady_clock::now() + 5s;
  while (pool.thread_count() > 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(pool.thread_count(), 0u);
  // And the pool still works afterwards.
  std::promise<void> again;
  ASSERT_TRUE(pool.Submit([&] { again.set_value(); }));
  EXPECT_EQ(again.get_future().wait_for(5s), std::future_status::ready);
}

TEST(HandlerPool, StopWaitsForRunningAndDropsQueued) {
  HandlerPool pool(1);
  Gate gate;
  std::atomic<int> ran{0};
  std::promise<void> started;
  ASSERT_TRUE(pool.Submit([&] {
    started.set_value();
    gate.Wait();
    ++ran;
  }));
  ASSERT_TRUE(pool.Submit([&] { ++ran; }));  // queued behind the first
  ASSERT_EQ(started.get_future().wait_for(5s), std::future_status::ready);
  std::thread opener([&] {
    std::this_thread::sleep_for(50ms);
    gate.Open();
  });
  pool.Stop();
  opener.join();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_FALSE(pool.Submit([] {}));
}

}  // namespace
}  // namespace cask::rpc::internal
