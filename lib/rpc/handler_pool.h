// HandlerPool: the threads that run ttrpc method handlers (internal to
// lib/rpc).
//
// Threads are started on demand, one per queued task when none is idle, up
// to `max_threads`; beyond that, tasks wait in FIFO order for a thread to
// free up. A thread idle for `idle_timeout` exits. So a handler that blocks
// for minutes (WaitProcess) occupies one thread and stalls nobody as long as
// fewer than `max_threads` handlers block at once.
//
// Thread safety: all methods are thread-safe. The destructor calls Stop().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace cask::rpc::internal {

class HandlerPool {
 public:
  explicit HandlerPool(size_t max_threads,
                       std::chrono::milliseconds idle_timeout = std::chrono::seconds(10));
  ~HandlerPool();
  HandlerPool(const HandlerPool&) = delete;
  HandlerPool& operator=(const HandlerPool&) = delete;

  // Queues `task`. Returns false (and drops it) after Stop().
  bool Submit(std::function<void()> task);

  // Drops queued tasks, waits for running ones to return and joins every
  // thread. Idempotent. Must not be called from a task.
  void Stop();

  size_t thread_count() const;

 private:
  void Work();
  // Joins threads that retired while idle. Called without mu_ held.
  void ReapRetired();

  const size_t max_threads_;
  const std::chrono::milliseconds idle_timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread> retired_;
  size_t idle_ = 0;
  bool stopped_ = false;
};

}  // namespace cask::rpc::internal
