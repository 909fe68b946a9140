// Container stdio on the guest side: a bounded buffer per output stream and
// a pump thread that fills it from the process's pipe or pty master.
//
// Back-pressure, never loss: when a buffer is full the pump stops reading,
// the pipe fills up, and the container's writes block until the host reads
// (ReadStdout/ReadStderr). EOF is reported only once the writer side is
// closed (pipe EOF, or EIO on a pty master whose slave side is gone) *and*
// every buffered byte has been read.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::agent {

// Limits of a blocking wait: the call's deadline and a cancellation test
// (e.g. "the host connection that asked is gone"). Waits that end early
// return DEADLINE_EXCEEDED or UNAVAILABLE.
struct WaitLimits {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::function<bool()> cancelled;

  bool IsCancelled() const { return cancelled && cancelled(); }
  // Waits on `cv` until `ready()`, the deadline, or cancellation (noticed on
  // a notify; Interrupt-style callers notify `cv`). Returns Ok when ready.
  Status Wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
              const std::function<bool()>& ready) const;
};

struct StreamChunk {
  std::string data;
  bool eof = false;
};

// A bounded byte FIFO between one producer (the pump) and any number of
// readers. Thread-safe.
class StreamBuffer {
 public:
  explicit StreamBuffer(size_t capacity);

  // Producer side. Blocks until there is room (returns the free space) or
  // the buffer is closed/aborted (returns 0).
  size_t WaitForSpace();
  void Append(std::string_view data);  // at most the free space
  void SetEof();                       // the writer side is closed

  // Reader side. Blocks until data is buffered or EOF, then returns up to
  // `max` bytes; eof is set only when nothing is left to read.
  Result<StreamChunk> Read(size_t max, const WaitLimits& limits);

  // Closes the stream for good: the producer stops, buffered data is
  // dropped and readers get eof. Used when the process is removed.
  void Abort();
  // Wakes blocked readers so they re-check their WaitLimits.
  void Interrupt();

  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string data_;
  size_t head_ = 0;  // bytes of data_ already read
  bool eof_ = false;
  bool aborted_ = false;
};

// Owns a readable fd and a thread that copies it into a StreamBuffer until
// EOF (or EIO, for a pty master). Destroying the pump stops the thread
// (through an eventfd) and closes the fd.
class StreamPump {
 public:
  // `fd` is made non-blocking.
  static Result<std::unique_ptr<StreamPump>> Start(UniqueFd fd, size_t capacity);
  ~StreamPump();
  StreamPump(const StreamPump&) = delete;
  StreamPump& operator=(const StreamPump&) = delete;

  StreamBuffer& buffer() { return buffer_; }

 private:
  explicit StreamPump(size_t capacity) : buffer_(capacity) {}
  void Run();

  StreamBuffer buffer_;
  UniqueFd fd_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

}  // namespace cask::agent
