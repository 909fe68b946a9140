#include "lib/sandbox/clock_sync.h"

namespace cask::sandbox {

ClockSync::ClockSync(SetTime set_time, std::chrono::milliseconds interval, Logger log)
    : set_time_(std::move(set_time)), interval_(interval), log_(std::move(log)) {
  thread_ = std::thread([this] { Run(); });
}

ClockSync::~ClockSync() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t ClockSync::synced() const {
  std::lock_guard l(mu_);
  return synced_;
}

void ClockSync::Run() {
  uint64_t failures = 0;
  for (;;) {
    {
      std::unique_lock l(mu_);
      if (cv_.wait_for(l, interval_, [&] { return stop_; })) return;
    }
    Status st = set_time_(std::chrono::system_clock::now());
    if (st.ok()) {
      std::lock_guard l(mu_);
      ++synced_;
      continue;
    }
    // Logged at 1, 2, 4, 8, ... failures: a dead agent does not flood the log.
    ++failures;
    if ((failures & (failures - 1)) == 0)
      log_.Warn("cannot set the guest clock", {{"error", st.error().Bounded(512).ToString()},
                                               {"failures", std::to_string(failures)}});
  }
}

}  // namespace cask::sandbox
