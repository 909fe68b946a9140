// ClockSync: keeps a pod VM's wall clock in step with the host's.
//
// The guest's CLOCK_REALTIME starts from whatever the virtual RTC says and
// drifts (under TCG by seconds per minute on a loaded host), so `date` and
// log times in containers would be wrong. The host sets it through the
// agent's SetTime: once when started, then every `interval`. The host never
// reads guest times for its own records (exit times are stamped on the
// host), so a guest that ignores SetTime only misleads itself.
//
// Thread safety: constructed and destroyed by the Sandbox; the thread it
// runs uses only the thread-safe AgentClient. The destructor wakes the
// thread and joins it (at most one SetTime call, bounded by the agent
// client's call timeout, is in flight).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "lib/base/log.h"
#include "lib/base/result.h"

namespace cask::sandbox {

class ClockSync {
 public:
  using SetTime = std::function<Status(std::chrono::system_clock::time_point)>;
  // Starts the periodic thread; the first SetTime runs after `interval`
  // (Sandbox::Boot sets the clock itself before, synchronously).
  ClockSync(SetTime set_time, std::chrono::milliseconds interval, Logger log);
  ~ClockSync();
  ClockSync(const ClockSync&) = delete;
  ClockSync& operator=(const ClockSync&) = delete;

  // How many SetTime calls succeeded (for tests).
  uint64_t synced() const;

 private:
  void Run();

  const SetTime set_time_;
  const std::chrono::milliseconds interval_;
  const Logger log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t synced_ = 0;
  std::thread thread_;
};

// How often a running pod VM's clock is set.
inline constexpr std::chrono::milliseconds kClockSyncInterval{60'000};

}  // namespace cask::sandbox
