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
// One poller for a character device. On a virtio-serial port, polling the
// port from a second thread can swallow the reader's wake-up: the guest
// kernel's poll takes a received buffer off the queue, and the interrupt
// that follows finds nothing new and wakes nobody, so the reader sleeps
// with input waiting (measured: 2-5 s stalls of bulk output, ended only by
// the reader's next timeout). So on a character device only the reading
// thread ever polls the fd: a writer that finds the port full asks the
// reader (through an eventfd) to watch for room as well, and waits to be
// told; it tries again after at most kWriterRetry even if nobody tells it,
// so a writer with no reader running still makes progress. Sockets keep
// one poll per waiting thread.
//
// Ownership: owns the fd and the eventfds. Thread safety: one thread reads;
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

  // How long a writer on a character device waits for the reader's word
  // that the fd has room before it tries again by itself.
  static constexpr std::chrono::milliseconds kWriterRetry{20};

  // Makes every blocked and later Read/WriteAll return CANCELLED. Idempotent.
  void Wake();
  // Wake(), then closes the fd once no write is in progress. Idempotent.
  // Must not race with Read(): call it from the reading thread, or after
  // reading stopped.
  void Close();

 private:
  FdStream(UniqueFd fd, UniqueFd wake, UniqueFd room_wanted, bool is_socket);
  ssize_t WriteSome(const struct iovec* iov, int count);
  // Polls fd for `events` and the eventfd. Returns true when fd is ready
  // (or hung up, or in error). The reader of a character device (POLLIN)
  // also polls for room while a writer waits for it, and tells the writers
  // when it comes (see the file comment).
  Result<bool> Wait(short events, std::optional<Clock::time_point> deadline);
  // A writer's wait on a character device: asks the reader to watch for
  // room and waits until told, kWriterRetry at most, or `deadline`.
  // Returns false at the deadline.
  Result<bool> WaitWritable(std::optional<Clock::time_point> deadline);

  UniqueFd fd_;
  UniqueFd wake_;
  // Character devices: written by a writer that waits for room, polled by
  // the reader (see the file comment).
  UniqueFd room_wanted_;
  const bool is_socket_;
  std::atomic<bool> woken_{false};
  // Character devices: bumped by the reader each time it sees room (or a
  // hang-up or error) while a writer waits; writers wait for it to change.
  std::mutex room_mu_;
  std::condition_variable room_cv_;
  uint64_t room_gen_ = 0;        // guarded by room_mu_
  bool room_waiters_ = false;    // guarded by room_mu_
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
