#include "cmd/cask-agent/stdio.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

namespace cask::agent {

Status WaitLimits::Wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                        const std::function<bool()>& ready) const {
  for (;;) {
    if (ready()) return Ok();
    if (IsCancelled()) return Error::Unavailable("call cancelled: the host connection is gone");
    if (deadline) {
      if (std::chrono::steady_clock::now() >= *deadline) return Error::DeadlineExceeded("deadline exceeded");
      cv.wait_until(lock, *deadline);
    } else {
      cv.wait(lock);
    }
  }
}

ByteBlock::ByteBlock(size_t capacity) : bytes_(new char[capacity]), capacity_(capacity) {}

ByteBlock::ByteBlock(std::string_view bytes) : ByteBlock(bytes.size()) { Append(bytes); }

size_t ByteBlock::Append(std::string_view bytes) {
  size_t n = std::min(room(), bytes.size());
  if (n > 0) std::memcpy(bytes_.get() + size_, bytes.data(), n);
  size_ += n;
  return n;
}

size_t BlockChunk::size() const {
  size_t n = 0;
  for (const auto& b : blocks) n += b.size();
  return n;
}

StreamBuffer::StreamBuffer(size_t capacity) : capacity_(capacity) {}

void StreamBuffer::SetListener(std::function<void()> on_ready) {
  std::lock_guard<std::mutex> lock(mu_);
  on_ready_ = std::move(on_ready);
}

void StreamBuffer::SetOnSpace(std::function<void()> on_space) {
  std::lock_guard<std::mutex> lock(mu_);
  on_space_ = std::move(on_space);
}

void StreamBuffer::Notify() {
  std::function<void()> fn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn = on_ready_;
  }
  if (fn) fn();
}

size_t StreamBuffer::RoomLocked() const {
  // The spare room of the last block is usable too (small appends go there).
  size_t spare = blocks_.empty() ? 0 : blocks_.back().room();
  return capacity_ > allocated_ ? capacity_ - allocated_ + spare : spare;
}

size_t StreamBuffer::WaitForSpace() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return aborted_ || eof_ || RoomLocked() > 0; });
  if (aborted_ || eof_) return 0;
  return RoomLocked();
}

size_t StreamBuffer::TakeRoom() {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_ || eof_) return 0;
  size_t room = RoomLocked();
  if (room == 0) paused_ = true;
  return room;
}

void StreamBuffer::AppendLocked(std::string_view data) {
  data = data.substr(0, std::min(data.size(), RoomLocked()));
  if (data.empty()) return;
  if (!blocks_.empty()) data.remove_prefix(blocks_.back().Append(data));
  if (!data.empty()) {
    // A new block: at least kSmallBlock (later small appends fill it), at
    // most what the bound leaves.
    size_t cap = std::max(data.size(), std::min(kSmallBlock, capacity_ > allocated_ ? capacity_ - allocated_ : 0));
    ByteBlock b(cap);
    b.Append(data);
    allocated_ += b.capacity();
    blocks_.push_back(std::move(b));
  }
}

void StreamBuffer::Append(std::string_view data) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_ || eof_) return;
    size_t before = size_;
    size_t n = std::min(data.size(), RoomLocked());
    AppendLocked(data.substr(0, n));
    size_ = before + n;
    cv_.notify_all();
  }
  Notify();
}

void StreamBuffer::Append(ByteBlock block) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_ || eof_ || block.empty()) return;
    const size_t fresh = capacity_ > allocated_ ? capacity_ - allocated_ : 0;
    const bool mostly_used = block.size() >= block.capacity() / 2;
    if (block.size() >= kSmallBlock && mostly_used && block.capacity() <= fresh) {
      // The common bulk case: the block is kept as it is, no copy.
      size_ += block.size();
      allocated_ += block.capacity();
      blocks_.push_back(std::move(block));
    } else {
      size_t n = std::min(block.size(), RoomLocked());
      AppendLocked(block.view().substr(0, n));
      size_ += n;
    }
    cv_.notify_all();
  }
  Notify();
}

void StreamBuffer::SetEof() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    eof_ = true;
    cv_.notify_all();
  }
  Notify();
}

BlockChunk StreamBuffer::TakeLocked(size_t max) {
  BlockChunk chunk;
  if (aborted_) {
    chunk.eof = true;
    return chunk;
  }
  size_t taken = 0;
  while (taken < max && !blocks_.empty()) {
    ByteBlock& front = blocks_.front();
    if (head_ == 0 && front.size() <= max - taken) {
      taken += front.size();
      allocated_ -= front.capacity();
      chunk.blocks.push_back(std::move(front));
      blocks_.pop_front();
      continue;
    }
    // Cut by `max`, or partly taken before: the bytes are copied out.
    // The bytes read count as freed at once: only the front block is ever
    // partly read, so memory stays within capacity plus one block.
    size_t n = std::min(front.size() - head_, max - taken);
    chunk.blocks.emplace_back(front.view().substr(head_, n));
    head_ += n;
    taken += n;
    allocated_ -= n;
    if (head_ == front.size()) {
      allocated_ -= front.capacity() - head_;
      blocks_.pop_front();
      head_ = 0;
    }
  }
  size_ -= taken;
  chunk.eof = eof_ && size_ == 0;
  if (taken > 0) cv_.notify_all();  // room for the producer
  return chunk;
}

BlockChunk StreamBuffer::TakeAndResume(std::unique_lock<std::mutex>& lock, size_t max) {
  BlockChunk chunk = TakeLocked(max);
  std::function<void()> resume;
  if (paused_ && !chunk.blocks.empty()) {
    paused_ = false;
    resume = on_space_;
  }
  lock.unlock();
  if (resume) resume();
  return chunk;
}

namespace {
StreamChunk Joined(BlockChunk c) {
  StreamChunk out;
  out.eof = c.eof;
  if (c.blocks.size() == 1) {
    out.data.assign(c.blocks[0].view());
  } else {
    out.data.reserve(c.size());
    for (const auto& b : c.blocks) out.data.append(b.view());
  }
  return out;
}
}  // namespace

Result<StreamChunk> StreamBuffer::Read(size_t max, const WaitLimits& limits) {
  std::unique_lock<std::mutex> lock(mu_);
  CASK_TRY(limits.Wait(lock, cv_, [&] { return aborted_ || eof_ || size_ > 0; }));
  return Joined(TakeAndResume(lock, max));
}

StreamChunk StreamBuffer::TryRead(size_t max) {
  std::unique_lock<std::mutex> lock(mu_);
  return Joined(TakeAndResume(lock, max));
}

BlockChunk StreamBuffer::TryReadBlocks(size_t max) {
  std::unique_lock<std::mutex> lock(mu_);
  return TakeAndResume(lock, max);
}

bool StreamBuffer::Readable() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_ || eof_ || size_ > 0;
}

bool StreamBuffer::Ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_ || eof_;
}

void StreamBuffer::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  blocks_.clear();
  head_ = 0;
  size_ = 0;
  allocated_ = 0;
  cv_.notify_all();
}

void StreamBuffer::Interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

size_t StreamBuffer::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return size_;
}

// ---- IoLoop ----

Result<std::unique_ptr<IoLoop>> IoLoop::Start() {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return Error::Sys(errno, "epoll_create1 for the stdio loop");
  UniqueFd epoll(ep);
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd for the stdio loop");
  UniqueFd stop(efd);
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, stop.get(), &ev) != 0)
    return Error::Sys(errno, "epoll_ctl add the stdio loop's stop eventfd");
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (tfd < 0) return Error::Sys(errno, "timerfd_create for the stdio loop");
  UniqueFd timer(tfd);
  ev.data.u64 = kTimerToken;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, timer.get(), &ev) != 0)
    return Error::Sys(errno, "epoll_ctl add the stdio loop's timerfd");
  std::unique_ptr<IoLoop> loop(new IoLoop(std::move(epoll), std::move(stop), std::move(timer)));
  loop->thread_ = std::thread([raw = loop.get()] { raw->Run(); });
  return loop;
}

IoLoop::IoLoop(UniqueFd epoll, UniqueFd stop, UniqueFd timer)
    : epoll_(std::move(epoll)), stop_(std::move(stop)), timer_(std::move(timer)) {}

IoLoop::~IoLoop() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

Result<uint64_t> IoLoop::Add(int fd, Handler on_input) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t token = next_token_++;  // never kTimerToken: 2^64 - 1 fds are not added
  struct epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return Error::Sys(errno, "epoll_ctl add a stdio fd");
  handlers_[token] = std::make_shared<Handler>(std::move(on_input));
  return token;
}

void IoLoop::Rearm(uint64_t token, int fd) {
  struct epoll_event ev = {};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = token;
  // ENOENT: removed meanwhile. Nothing else can fail on a valid epoll fd.
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void IoLoop::RearmAfter(uint64_t token, int fd, std::chrono::microseconds delay) {
  if (delay <= std::chrono::microseconds::zero()) return Rearm(token, fd);
  const Clock::time_point due = Clock::now() + std::min(delay, kMaxRearmDelay);
  std::lock_guard<std::mutex> lock(mu_);
  if (handlers_.count(token) == 0) return;  // removed
  delayed_.emplace(due, std::make_pair(token, fd));
  if (due < timer_set_) SetTimerLocked();
}

void IoLoop::SetTimerLocked() {
  struct itimerspec its = {};
  if (!delayed_.empty()) {
    // steady_clock is CLOCK_MONOTONIC; 0 would disarm, so at least 1 ns.
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(delayed_.begin()->first.time_since_epoch()).count();
    if (ns <= 0) ns = 1;
    its.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    its.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    timer_set_ = delayed_.begin()->first;
  } else {
    timer_set_ = Clock::time_point::max();
  }
  // Cannot fail for a valid timerfd and a normalized time.
  (void)::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &its, nullptr);
}

void IoLoop::RunDueRearms() {
  uint64_t expirations;
  [[maybe_unused]] ssize_t r = ::read(timer_.get(), &expirations, sizeof expirations);  // EAGAIN: fine
  std::lock_guard<std::mutex> lock(mu_);
  const Clock::time_point now = Clock::now();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    auto [token, fd] = delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    // Under mu_ with the token still present, its fd is still open: Remove
    // takes mu_ to drop the token before the owner closes the fd.
    if (handlers_.count(token) != 0) Rearm(token, fd);
  }
  SetTimerLocked();
}

void IoLoop::Remove(uint64_t token, int fd) {
  std::unique_lock<std::mutex> lock(mu_);
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(token);
  for (auto it = delayed_.begin(); it != delayed_.end();) {
    it = it->second.first == token ? delayed_.erase(it) : std::next(it);
  }
  // A handler of this token running now finishes first (not waited for on
  // the loop thread itself, where it would be this very call).
  if (std::this_thread::get_id() != thread_.get_id()) done_cv_.wait(lock, [&] { return running_ != token; });
}

size_t IoLoop::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handlers_.size();
}

void IoLoop::Run() {
  constexpr int kMaxEvents = 64;
  struct epoll_event events[kMaxEvents];
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // only EBADF/EINVAL: the loop is unusable
    }
    for (int i = 0; i < n; ++i) {
      uint64_t token = events[i].data.u64;
      if (token == kStopToken) return;
      if (token == kTimerToken) {
        RunDueRearms();
        continue;
      }
      std::shared_ptr<Handler> h;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = handlers_.find(token);
        if (it == handlers_.end()) continue;  // removed after the event was queued
        h = it->second;
        running_ = token;
      }
      (*h)(token);
      h.reset();
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_ = 0;
      }
      done_cv_.notify_all();
    }
  }
}

// ---- StreamPump ----

Result<std::unique_ptr<StreamPump>> StreamPump::Start(IoLoop& loop, UniqueFd fd, size_t capacity,
                                                      std::function<void()> on_ready, size_t pipe_bytes,
                                                      std::chrono::microseconds short_read_delay) {
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    return Error::Sys(errno, "set O_NONBLOCK on stream fd");
  // Not a pipe (a pty master: EBADF), or the kernel's limit is lower
  // (EPERM/EINVAL): the fd works as it is, only with more wake-ups.
  if (pipe_bytes > 0) (void)::fcntl(fd.get(), F_SETPIPE_SZ, static_cast<int>(pipe_bytes));
  auto state = std::make_shared<State>(capacity);
  state->fd = std::move(fd);
  state->short_read_delay = short_read_delay;
  if (::fcntl(state->fd.get(), F_GETPIPE_SZ) < 0) state->short_read = kShortTtyRead;
  if (on_ready) state->buffer.SetListener(std::move(on_ready));
  std::unique_ptr<StreamPump> p(new StreamPump(loop, state));
  // Pausing happens only in OnInput, which records the token first, so the
  // token is known whenever on_space can run.
  std::weak_ptr<State> wstate = state;
  state->buffer.SetOnSpace([&loop, wstate] {
    if (auto s = wstate.lock()) loop.Rearm(s->token.load(), s->fd.get());
  });
  // The handler keeps the state (fd and buffer) alive while it runs, so a
  // pump destroyed meanwhile cannot close the fd under it.
  std::weak_ptr<State> weak = state;
  CASK_ASSIGN_OR_RETURN(uint64_t t, loop.Add(state->fd.get(), [&loop, weak](uint64_t token) {
                          if (auto s = weak.lock()) OnInput(loop, token, *s);
                        }));
  p->token_ = t;
  return p;
}

StreamPump::~StreamPump() {
  state_->buffer.Abort();
  loop_.Remove(token_, state_->fd.get());
}

void StreamPump::OnInput(IoLoop& loop, uint64_t token, State& s) {
  s.token.store(token);
  size_t room = s.buffer.TakeRoom();
  if (room == 0) return;  // full (a reader re-arms through on_space), or closed
  // Read straight into a block. A read that fills most of it hands the
  // block to the buffer as it is; a short one (interactive output, small
  // writes) is copied and the block kept for the next read, so small
  // reads cost no allocation.
  const size_t want = std::min(room, kReadBlock);
  if (s.scratch.capacity() < want) s.scratch = ByteBlock(want);
  ssize_t n = ::read(s.fd.get(), s.scratch.data(), want);
  if (n > 0) {
    s.scratch.Grow(static_cast<size_t>(n));
    if (s.scratch.size() >= StreamBuffer::kSmallBlock && s.scratch.size() >= s.scratch.capacity() / 2) {
      s.buffer.Append(std::move(s.scratch));
      s.scratch = ByteBlock();
    } else {
      s.buffer.Append(s.scratch.view());
      s.scratch.Clear();
    }
    // A short read while the buffer had room for more: a small writer (or
    // interactive output). Let its next writes gather first. A read cut by
    // the room left is not delayed: the buffer is nearly full and the host
    // decides the pace.
    if (static_cast<size_t>(n) < std::min(want, s.short_read)) {
      loop.RearmAfter(token, s.fd.get(), s.short_read_delay);
    } else {
      loop.Rearm(token, s.fd.get());
    }
    return;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
    loop.Rearm(token, s.fd.get());
    return;
  }
  // 0: pipe EOF. EIO: pty master after the last slave fd closed. Any other
  // error also ends the stream.
  s.buffer.SetEof();
}

}  // namespace cask::agent
