// OOM-kill notifications for GetOOMEvent.
//
// Watches each container's cgroup memory.events with inotify (cgroup v2
// signals IN_MODIFY on it) and queues the container id whenever its
// `oom_kill` counter grows. A thread owns the inotify fd.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "cmd/cask-agent/stdio.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::agent {

// The oom_kill counter of a memory.events text ("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").
// A text without the key reads as 0.
uint64_t ParseOomKillCount(std::string_view memory_events);

class OomWatcher {
 public:
  // Pending events beyond this are dropped, oldest first (the host polls
  // GetOOMEvent continuously; a backlog this long means nobody listens).
  static constexpr size_t kMaxQueued = 1024;

  OomWatcher() = default;
  ~OomWatcher();  // Stop()
  OomWatcher(const OomWatcher&) = delete;
  OomWatcher& operator=(const OomWatcher&) = delete;

  Status Start();
  void Stop();

  // Starts watching `memory_events_path` for container `id`.
  Status Watch(const std::string& id, const std::string& memory_events_path);
  void Unwatch(const std::string& id);

  // Re-reads the counter of `id` now (what an inotify event triggers).
  void Check(const std::string& id);

  // Blocks until a container was OOM-killed; returns its id. A container
  // OOM-killed again while still queued is queued once.
  Result<std::string> Next(const WaitLimits& limits);
  // The next queued id, without waiting.
  std::optional<std::string> TryNext();
  // Called (without the watcher's lock) after an id was queued; must not
  // block. Set before Start().
  void SetListener(std::function<void()> fn);
  // Wakes blocked Next() calls so they re-check their limits.
  void Interrupt();

 private:
  void Run();

  UniqueFd inotify_fd_;
  UniqueFd stop_fd_;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  struct Watched {
    std::string path;
    int wd = -1;
    uint64_t oom_kills = 0;
  };
  std::map<std::string, Watched> watched_;  // by container id
  std::map<int, std::string> by_wd_;
  std::deque<std::string> queue_;
  std::function<void()> listener_;
};

}  // namespace cask::agent
