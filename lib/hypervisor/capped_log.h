// CappedLog: the tail of an untrusted byte stream (the guest console,
// virtiofsd's stderr), bounded in memory and on disk.
//
// The guest decides how much it writes to its console, and a helper can be
// made to log without end; the host keeps only the last `keep_bytes` of
// each stream in memory, and a file at `path` (for `cask-runtime` and for a
// human debugging a pod) that never grows beyond 2 * keep_bytes: when an
// append would cross that, the file is rewritten to hold the last
// keep_bytes only.
//
// LineLimiter turns the same stream into log lines at a bounded rate (a
// token bucket in bytes), truncating each line, so that a guest cannot
// flood the shim's log either.
//
// Thread safety: CappedLog is thread-safe (one writer, any readers);
// LineLimiter is not (it belongs to the one thread that reads the stream).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/base/thread_annotations.h"
#include "lib/base/unique_fd.h"

namespace cask::hypervisor {

class CappedLog {
 public:
  // Creates (truncating) `path`, mode 0600. keep_bytes > 0.
  static Result<std::unique_ptr<CappedLog>> Create(std::string path, size_t keep_bytes);
  CappedLog(const CappedLog&) = delete;
  CappedLog& operator=(const CappedLog&) = delete;

  const std::string& path() const { return path_; }
  size_t keep_bytes() const { return keep_; }

  // Appends to memory and file. A failing file write is remembered (and
  // the file is given up) but never stops the in-memory tail.
  void Append(std::string_view data);
  // The last `max_bytes` bytes kept (at most keep_bytes), starting at a
  // line boundary when one is in range.
  std::string Tail(size_t max_bytes) const;
  // Every byte ever appended, kept or not.
  uint64_t total_bytes() const;
  // The size of the file now.
  uint64_t file_bytes() const;
  // Closes the file and unlinks it; Tail() keeps working.
  void RemoveFile();

 private:
  CappedLog(std::string path, size_t keep, UniqueFd fd) : path_(std::move(path)), keep_(keep), fd_(std::move(fd)) {}
  void TrimLocked() REQUIRES(mu_);

  const std::string path_;
  const size_t keep_;
  mutable Mutex mu_;
  UniqueFd fd_ GUARDED_BY(mu_);
  std::string buf_ GUARDED_BY(mu_);  // at most 2 * keep_, the last keep_ are "kept"
  uint64_t total_ GUARDED_BY(mu_) = 0;
  uint64_t file_size_ GUARDED_BY(mu_) = 0;
};

class LineLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  using Sink = std::function<void(std::string_view line)>;
  // Emits at most `burst_bytes` at once and `bytes_per_sec` sustained;
  // lines longer than `max_line` are cut (marked "..."). What is dropped is
  // counted and reported as one line when the budget allows again.
  LineLimiter(Sink sink, size_t bytes_per_sec, size_t burst_bytes, size_t max_line);
  void Feed(std::string_view data, Clock::time_point now = Clock::now());
  // Emits a pending partial line (end of stream).
  void Flush(Clock::time_point now = Clock::now());
  uint64_t dropped_bytes() const { return dropped_total_; }

 private:
  void Emit(std::string_view line, Clock::time_point now);
  void Refill(Clock::time_point now);

  Sink sink_;
  const double rate_;
  const double burst_;
  const size_t max_line_;
  double tokens_;
  Clock::time_point last_;
  std::string partial_;
  bool partial_cut_ = false;
  uint64_t dropped_pending_ = 0;
  uint64_t dropped_total_ = 0;
};

// The log pump of one VM's host side (one thread per VM, shared by the
// backends). Until `wake_fd` (an eventfd) is readable it copies the guest
// console `console_fd` into `console` and, as lines at a bounded rate
// (4 KiB/s, 32 KiB burst, 1 KiB lines), into `console_logger` ("guest
// console", line=...), and each stream's fd into its capped log; at most
// 256 KiB per stream per wake-up. A stream at EOF or error is dropped from
// the poll set and its `eof` flag (if any) set. On the wake it takes what
// is still buffered (bounded as above) and returns. An fd of -1 is absent.
struct PumpStream {
  int fd = -1;
  CappedLog* log = nullptr;
  std::atomic<bool>* eof = nullptr;
};
void PumpVmLogs(int wake_fd, int console_fd, CappedLog* console, const Logger& console_logger,
                std::vector<PumpStream> streams);

}  // namespace cask::hypervisor
