// FdStream: the byte-stream transport under a ttrpc connection (internal to
// lib/rpc).
//
// Works on any fd that carries a bidirectional byte stream: a unix or vsock
// socket, or a character device such as a virtio-serial port (one fd used
// for both directions). It reads with read(2) and writes with write(2),
// except that sockets are written with send(MSG_NOSIGNAL) so a vanished peer
// is an EPIPE error rather than a SIGPIPE. The fd is put in non-blocking mode
// and every wait polls it together with an eventfd, so Wake() unblocks
// readers and writers on any kind of fd (no shutdown(2) needed).
//
// Ownership: owns the fd and the eventfd. Thread safety: one thread reads;
// any number of threads write (writes are serialised by an internal mutex,
// so frames never interleave); Wake() and Close() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include <sys/types.h>
#include <sys/uio.h>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::rpc::internal {

class FdStream {
 public:
  using Clock = std::chrono::steady_clock;

  // Takes the fd, makes it non-blocking and creates the wake-up eventfd.
  static Result<std::unique_ptr<FdStream>> Make(UniqueFd fd);

  FdStream(const FdStream&) = delete;
  FdStream& operator=(const FdStream&) = delete;

  // Waits until bytes arrive and reads up to `cap` of them. Returns the count,
  // 0 at end of stream (the peer closed it). Errors: CANCELLED after Wake(),
  // DEADLINE_EXCEEDED when `deadline` passes first, otherwise the read/poll
  // failure.
  Result<size_t> Read(char* buf, size_t cap, std::optional<Clock::time_point> deadline);

  // Writes every byte of `data` as one unit. Errors: CANCELLED after Wake()
  // or Close(); DEADLINE_EXCEEDED when `deadline` passes before the first
  // byte was written (nothing was sent) -- if it passes mid-way the write
  // completes anyway, since a partial frame would corrupt the stream for
  // everyone; otherwise the write failure (the stream is then unusable).
  Status WriteAll(std::string_view data, std::optional<Clock::time_point> deadline = std::nullopt);
  // The same for `first` then `second` as one unit, gathered by writev(2)
  // (sendmsg on sockets) instead of being copied together.
  Status WriteAll(std::string_view first, std::string_view second,
                  std::optional<Clock::time_point> deadline = std::nullopt);

  // Makes every blocked and later Read/WriteAll return CANCELLED. Idempotent.
  void Wake();
  // Wake(), then closes the fd once no write is in progress. Idempotent.
  // Must not race with Read(): call it from the reading thread, or after
  // reading stopped.
  void Close();

 private:
  FdStream(UniqueFd fd, UniqueFd wake, bool is_socket);
  ssize_t WriteSome(const struct iovec* iov, int count);
  // Polls fd for `events` and the eventfd. Returns true when fd is ready.
  Result<bool> Wait(short events, std::optional<Clock::time_point> deadline);

  UniqueFd fd_;
  UniqueFd wake_;
  const bool is_socket_;
  std::atomic<bool> woken_{false};
  // The writer slot: one frame is written at a time; a waiting writer gives
  // up at its deadline. (A mutex and a flag rather than std::timed_mutex:
  // its timed lock is pthread_mutex_clocklock, which ThreadSanitizer does
  // not follow.)
  std::mutex write_mu_;
  std::condition_variable write_cv_;
  bool writing_ = false;  // guarded by write_mu_
  bool closed_ = false;   // guarded by write_mu_
};

}  // namespace cask::rpc::internal
