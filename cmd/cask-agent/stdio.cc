#include "cmd/cask-agent/stdio.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

size_t StreamBuffer::WaitForSpace() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return aborted_ || eof_ || data_.size() - head_ < capacity_; });
  if (aborted_ || eof_) return 0;
  return capacity_ - (data_.size() - head_);
}

size_t StreamBuffer::TakeRoom() {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_ || eof_) return 0;
  size_t room = capacity_ - (data_.size() - head_);
  if (room == 0) paused_ = true;
  return room;
}

void StreamBuffer::Append(std::string_view data) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (aborted_ || eof_) return;
    if (head_ > 0 && head_ >= data_.size() / 2) {  // compact
      data_.erase(0, head_);
      head_ = 0;
    }
    size_t room = capacity_ - (data_.size() - head_);
    data_.append(data.substr(0, std::min(room, data.size())));
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

StreamChunk StreamBuffer::TakeLocked(size_t max) {
  StreamChunk chunk;
  if (aborted_) {
    chunk.eof = true;
    return chunk;
  }
  size_t n = std::min(max, data_.size() - head_);
  chunk.data.assign(data_, head_, n);
  head_ += n;
  if (head_ == data_.size()) {
    data_.clear();
    head_ = 0;
  }
  chunk.eof = eof_ && data_.size() == head_;
  if (n > 0) cv_.notify_all();  // room for the producer
  return chunk;
}

StreamChunk StreamBuffer::TakeAndResume(std::unique_lock<std::mutex>& lock, size_t max) {
  StreamChunk chunk = TakeLocked(max);
  std::function<void()> resume;
  if (paused_ && !chunk.data.empty()) {
    paused_ = false;
    resume = on_space_;
  }
  lock.unlock();
  if (resume) resume();
  return chunk;
}

Result<StreamChunk> StreamBuffer::Read(size_t max, const WaitLimits& limits) {
  std::unique_lock<std::mutex> lock(mu_);
  CASK_TRY(limits.Wait(lock, cv_, [&] { return aborted_ || eof_ || data_.size() > head_; }));
  return TakeAndResume(lock, max);
}

StreamChunk StreamBuffer::TryRead(size_t max) {
  std::unique_lock<std::mutex> lock(mu_);
  return TakeAndResume(lock, max);
}

bool StreamBuffer::Readable() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aborted_ || eof_ || data_.size() > head_;
}

void StreamBuffer::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  data_.clear();
  head_ = 0;
  cv_.notify_all();
}

void StreamBuffer::Interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

size_t StreamBuffer::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return data_.size() - head_;
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
  std::unique_ptr<IoLoop> loop(new IoLoop(std::move(epoll), std::move(stop)));
  loop->thread_ = std::thread([raw = loop.get()] { raw->Run(); });
  return loop;
}

IoLoop::IoLoop(UniqueFd epoll, UniqueFd stop) : epoll_(std::move(epoll)), stop_(std::move(stop)) {}

IoLoop::~IoLoop() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

Result<uint64_t> IoLoop::Add(int fd, Handler on_input) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t token = next_token_++;
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

void IoLoop::Remove(uint64_t token, int fd) {
  std::unique_lock<std::mutex> lock(mu_);
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(token);
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
      if (token == 0) return;  // stop
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
                                                      std::function<void()> on_ready) {
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    return Error::Sys(errno, "set O_NONBLOCK on stream fd");
  auto state = std::make_shared<State>(capacity);
  state->fd = std::move(fd);
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
  char chunk[64 * 1024];
  size_t room = s.buffer.TakeRoom();
  if (room == 0) return;  // full (a reader re-arms through on_space), or closed
  ssize_t n = ::read(s.fd.get(), chunk, std::min(room, sizeof chunk));
  if (n > 0) {
    s.buffer.Append(std::string_view(chunk, static_cast<size_t>(n)));
    loop.Rearm(token, s.fd.get());
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
