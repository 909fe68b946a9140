#include "lib/rpc/handler_pool.h"

#include <algorithm>
#include <utility>

namespace cask::rpc::internal {

HandlerPool::HandlerPool(size_t max_threads, std::chrono::milliseconds idle_timeout)
    : max_threads_(std::max<size_t>(max_threads, 1)), idle_timeout_(idle_timeout) {}

HandlerPool::~HandlerPool() { Stop(); }

bool HandlerPool::Submit(std::function<void()> task) {
  {
    MutexLock lock(mu_);
    if (stopped_) return false;
    queue_.push_back(std::move(task));
    if (idle_ < queue_.size() && threads_.size() < max_threads_) {
      std::thread t([this] { Work(); });
      auto id = t.get_id();
      threads_.emplace(id, std::move(t));
    } else {
      cv_.notify_one();
    }
  }
  ReapRetired();
  return true;
}

// The analysis cannot follow the unlock/lock around the task below.
void HandlerPool::Work() NO_THREAD_SAFETY_ANALYSIS {
  std::unique_lock<Mutex> lock(mu_);
  for (;;) {
    if (queue_.empty() && !stopped_) {
      ++idle_;
      bool woke = cv_.wait_for(lock, idle_timeout_, [this] {
        mu_.AssertHeld();
        return stopped_ || !queue_.empty();
      });
      --idle_;
      if (!woke) {
        // Idle too long: retire; a later Submit or Stop joins this thread.
        auto it = threads_.find(std::this_thread::get_id());
        retired_.push_back(std::move(it->second));
        threads_.erase(it);
        return;
      }
    }
    if (stopped_) return;
    auto task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    task();
    // Destroy the task (and what it captured) before taking the lock again.
    task = nullptr;
    lock.lock();
  }
}

void HandlerPool::ReapRetired() {
  std::vector<std::thread> done;
  {
    MutexLock lock(mu_);
    done.swap(retired_);
  }
  for (auto& t : done) t.join();
}

void HandlerPool::Stop() {
  std::vector<std::thread> all;
  std::deque<std::function<void()>> dropped;
  {
    MutexLock lock(mu_);
    stopped_ = true;
    dropped.swap(queue_);
    for (auto& [id, t] : threads_) all.push_back(std::move(t));
    threads_.clear();
    for (auto& t : retired_) all.push_back(std::move(t));
    retired_.clear();
    cv_.notify_all();
  }
  dropped.clear();
  for (auto& t : all) t.join();
}

size_t HandlerPool::thread_count() const {
  MutexLock lock(mu_);
  return threads_.size();
}

size_t HandlerPool::idle_count() const {
  MutexLock lock(mu_);
  return idle_;
}

}  // namespace cask::rpc::internal
