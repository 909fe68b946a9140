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

#include "lib/base/thread_annotations.h"

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
  // Threads waiting for a task.
  size_t idle_count() const;

 private:
  void Work() EXCLUDES(mu_);
  // Joins threads that retired while idle.
  void ReapRetired() EXCLUDES(mu_);

  const size_t max_threads_;
  const std::chrono::milliseconds idle_timeout_;
  mutable Mutex mu_;  // leaf lock: tasks run without it
  std::condition_variable_any cv_;
  std::deque<std::function<void()>> queue_ GUARDED_BY(mu_);
  std::map<std::thread::id, std::thread> threads_ GUARDED_BY(mu_);
  std::vector<std::thread> retired_ GUARDED_BY(mu_);
  size_t idle_ GUARDED_BY(mu_) = 0;
  bool stopped_ GUARDED_BY(mu_) = false;
};

}  // namespace cask::rpc::internal
