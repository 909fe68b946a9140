// Container stdio on the guest side: a bounded buffer per output stream,
// filled from the process's pipe or pty master by one IoLoop thread shared
// by every stream of the agent (threads do not grow with processes).
//
// Back-pressure, never loss: when a buffer is full the loop stops reading
// that fd, the pipe fills up, and the container's writes block until the
// host takes output (GetEvents, or the legacy ReadStdout/ReadStderr). EOF is
// reported only once the writer side is closed (pipe EOF, or EIO on a pty
// master whose slave side is gone) *and* every buffered byte has been read.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

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

// Output bytes in one allocation that is not zero-filled first: the pump
// reads a pipe straight into a block, and the block moves (never copied)
// from the pump to an event batch. Under TCG every pass over the bytes is
// paid in emulated instructions, so the guest side of the output path keeps
// them to the kernel's read, one copy into the reply and its serialization.
// Move-only.
class ByteBlock {
 public:
  ByteBlock() = default;
  explicit ByteBlock(size_t capacity);
  explicit ByteBlock(std::string_view bytes);  // a copy, exactly sized
  ByteBlock(ByteBlock&& o) noexcept
      : bytes_(std::move(o.bytes_)), size_(std::exchange(o.size_, 0)), capacity_(std::exchange(o.capacity_, 0)) {}
  ByteBlock& operator=(ByteBlock&& o) noexcept {
    bytes_ = std::move(o.bytes_);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    return *this;
  }

  char* data() { return bytes_.get(); }
  const char* data() const { return bytes_.get(); }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  size_t room() const { return capacity_ - size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {bytes_.get(), size_}; }
  // After writing `n` bytes at data() + size() (n <= room()).
  void Grow(size_t n) { size_ += n; }
  void Clear() { size_ = 0; }
  // Copies the first room() bytes of `bytes` to the end; returns how many.
  size_t Append(std::string_view bytes);

 private:
  std::unique_ptr<char[]> bytes_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// What a reader took for an event batch: whole blocks where they fit, so
// the bytes are not copied on the way.
struct BlockChunk {
  std::vector<ByteBlock> blocks;
  bool eof = false;
  size_t size() const;
};

// A bounded byte FIFO between one producer (the pump) and any number of
// readers. Thread-safe. Its callbacks run without the buffer's lock held,
// on the thread that caused them; they must not block.
//
// The bound is on memory, not only on bytes: a block counts with its whole
// capacity (less what was read of it), so a producer of many tiny writes
// cannot hold more than `capacity` bytes of allocations plus the one block
// being read (small appends are copied into the spare room of the last
// block, or into a block of at most kSmallBlock).
class StreamBuffer {
 public:
  // Appends of fewer bytes than this are coalesced (copied) instead of
  // kept as a block of their own.
  static constexpr size_t kSmallBlock = 4096;

  explicit StreamBuffer(size_t capacity);

  // Called (outside the lock) after data or EOF arrived. Set before the
  // producer starts.
  void SetListener(std::function<void()> on_ready);
  // Called once after a reader freed space in a buffer whose producer had
  // found it full (TakeRoom returned 0). Set before the producer starts.
  void SetOnSpace(std::function<void()> on_space);

  // Producer side. Blocks until there is room (returns the free space) or
  // the buffer is closed/aborted (returns 0).
  size_t WaitForSpace();
  // Non-blocking: the free space; 0 when full (the producer then pauses
  // until on_space), closed or aborted.
  size_t TakeRoom();
  void Append(std::string_view data);  // at most the free space (copied)
  // Takes `block` (its bytes, at most the free space counted by capacity;
  // a block mostly unused is copied into a fitting one instead).
  void Append(ByteBlock block);
  void SetEof();  // the writer side is closed

  // Reader side. Blocks until data is buffered or EOF, then returns up to
  // `max` bytes; eof is set only when nothing is left to read.
  Result<StreamChunk> Read(size_t max, const WaitLimits& limits);
  // Non-blocking: up to `max` buffered bytes (possibly none); eof as Read.
  StreamChunk TryRead(size_t max);
  // Same, as blocks (moved out; only a block cut by `max` is copied).
  BlockChunk TryReadBlocks(size_t max);
  // Whether TryRead(n > 0) would return data or eof.
  bool Readable() const;
  // Whether the writer side is closed or the stream aborted: no more bytes
  // will come (buffered ones may still wait to be read).
  bool Ended() const;

  // Closes the stream for good: the producer stops, buffered data is
  // dropped and readers get eof. Used when the process is removed.
  void Abort();
  // Wakes blocked readers so they re-check their WaitLimits.
  void Interrupt();

  size_t size() const;  // unread bytes
  size_t capacity() const { return capacity_; }

 private:
  size_t RoomLocked() const;
  void AppendLocked(std::string_view data);
  BlockChunk TakeLocked(size_t max);
  // TakeLocked, then (unlocked) resumes a producer that found the buffer
  // full: the common end of the readers.
  BlockChunk TakeAndResume(std::unique_lock<std::mutex>& lock, size_t max);
  void Notify();

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ByteBlock> blocks_;
  size_t head_ = 0;       // bytes of blocks_.front() already read
  size_t size_ = 0;       // unread bytes in blocks_
  size_t allocated_ = 0;  // capacity of blocks_ less head_ (what the bound counts)
  bool eof_ = false;
  bool aborted_ = false;
  bool paused_ = false;  // the producer found the buffer full
  std::function<void()> on_ready_;
  std::function<void()> on_space_;
};

// One epoll thread that runs input handlers for many fds. A handler is
// one-shot: after it ran, its fd is not watched until Rearm (or RearmAfter,
// for a later time: one timerfd of the loop serves every delayed re-arm).
// Used by every StreamPump of the agent, so output costs no thread per
// process.
//
// Thread safety: all methods are thread-safe; handlers run on the loop
// thread, one at a time, with no IoLoop lock held.
class IoLoop {
 public:
  using Handler = std::function<void(uint64_t token)>;  // gets its own token

  static Result<std::unique_ptr<IoLoop>> Start();
  ~IoLoop();  // stops and joins the thread
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // Watches `fd` (which must stay open until Remove) for input or hang-up.
  Result<uint64_t> Add(int fd, Handler on_input);
  // Watches the fd of `token` again (after its handler ran). A token already
  // removed is ignored.
  void Rearm(uint64_t token, int fd);
  // Rearm, `delay` from now (at most kMaxRearmDelay). Until then the fd is
  // not watched, so input gathers in it (a pipe) and the next handler call
  // takes it at once. A token removed meanwhile is not re-armed.
  void RearmAfter(uint64_t token, int fd, std::chrono::microseconds delay);
  static constexpr std::chrono::microseconds kMaxRearmDelay{100'000};
  // Stops watching. Waits for a handler of `token` running on the loop
  // thread to return (so call it without locks that handlers take); it will
  // not run again.
  void Remove(uint64_t token, int fd);

  // Fds being watched (for tests and benchmarks).
  size_t size() const;

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr uint64_t kStopToken = 0;
  static constexpr uint64_t kTimerToken = ~uint64_t{0};

  IoLoop(UniqueFd epoll, UniqueFd stop, UniqueFd timer);
  void Run();
  // Re-arms the delayed fds that are due and sets the timer for the next.
  void RunDueRearms();
  // Sets the timerfd to the earliest delayed re-arm (or disarms it).
  void SetTimerLocked();

  UniqueFd epoll_;
  UniqueFd stop_;
  UniqueFd timer_;  // CLOCK_MONOTONIC, absolute: the earliest of delayed_
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable done_cv_;  // a handler returned
  uint64_t next_token_ = 1;  // 0 is the stop eventfd
  uint64_t running_ = 0;     // token of the handler running now
  std::map<uint64_t, std::shared_ptr<Handler>> handlers_;
  // Delayed re-arms: due time -> (token, fd). At most one per watched fd in
  // practice (a handler asks for one re-arm per run); dropped on Remove.
  std::multimap<Clock::time_point, std::pair<uint64_t, int>> delayed_;
  Clock::time_point timer_set_ = Clock::time_point::max();  // what timer_ is armed for
};

// Copies a readable fd into a StreamBuffer until EOF (or EIO, for a pty
// master), on an IoLoop. Destroying the pump stops the copying and closes
// the fd (once a handler running at that moment has returned).
class StreamPump {
 public:
  // Bytes read from the fd at a time at most (one block).
  static constexpr size_t kReadBlock = 256 * 1024;
  // A read shorter than this is a small write (or a few): with a
  // `short_read_delay`, the fd is watched again only after that delay, so
  // the writer's next writes gather in the pipe and one wake-up of the loop
  // takes them all, instead of one wake-up (and one reply) per write.
  static constexpr size_t kShortRead = 64 * 1024;
  // The same for an fd that is not a pipe (a pty master): a terminal hands
  // out at most 4 KiB per read, so only a read below that is short (the
  // reader caught up with the writer); a full one is re-armed at once.
  static constexpr size_t kShortTtyRead = 4096;

  // `fd` is made non-blocking. `on_ready` is the buffer's listener (data or
  // EOF arrived); may be empty. When `pipe_bytes` > 0 and `fd` is a pipe,
  // the pipe is resized to it (F_SETPIPE_SZ; kept as it is if the kernel
  // refuses): a writer of bulk output then fills a block per wake-up
  // instead of blocking every 64 KiB. The pipe's pages belong to the guest
  // kernel and are allocated only as the writer fills them. After a read
  // shorter than kShortRead (kShortTtyRead for a non-pipe) the fd is re-armed `short_read_delay` later
  // (0: at once; capped at IoLoop::kMaxRearmDelay): output that follows
  // a small write within that delay reaches the buffer at most that late.
  static Result<std::unique_ptr<StreamPump>> Start(IoLoop& loop, UniqueFd fd, size_t capacity,
                                                   std::function<void()> on_ready = {}, size_t pipe_bytes = 0,
                                                   std::chrono::microseconds short_read_delay = {});
  ~StreamPump();
  StreamPump(const StreamPump&) = delete;
  StreamPump& operator=(const StreamPump&) = delete;

  StreamBuffer& buffer() { return state_->buffer; }

 private:
  struct State {
    explicit State(size_t capacity) : buffer(capacity) {}
    StreamBuffer buffer;
    UniqueFd fd;
    std::atomic<uint64_t> token{0};  // the IoLoop token, once known
    ByteBlock scratch;               // the next read's block (OnInput only)
    std::chrono::microseconds short_read_delay{};
    size_t short_read = kShortRead;  // kShortTtyRead for a non-pipe
  };
  StreamPump(IoLoop& loop, std::shared_ptr<State> state) : loop_(loop), state_(std::move(state)) {}
  // One readable event: reads what fits, then re-arms or pauses.
  static void OnInput(IoLoop& loop, uint64_t token, State& s);

  IoLoop& loop_;
  std::shared_ptr<State> state_;
  uint64_t token_ = 0;
};

}  // namespace cask::agent
