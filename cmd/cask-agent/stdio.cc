#include "cmd/cask-agent/stdio.h"

#include <fcntl.h>
#include <poll.h>
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

size_t StreamBuffer::WaitForSpace() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return aborted_ || eof_ || data_.size() - head_ < capacity_; });
  if (aborted_ || eof_) return 0;
  return capacity_ - (data_.size() - head_);
}

void StreamBuffer::Append(std::string_view data) {
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

void StreamBuffer::SetEof() {
  std::lock_guard<std::mutex> lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

Result<StreamChunk> StreamBuffer::Read(size_t max, const WaitLimits& limits) {
  std::unique_lock<std::mutex> lock(mu_);
  CASK_TRY(limits.Wait(lock, cv_, [&] { return aborted_ || eof_ || data_.size() > head_; }));
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

Result<std::unique_ptr<StreamPump>> StreamPump::Start(UniqueFd fd, size_t capacity) {
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    return Error::Sys(errno, "set O_NONBLOCK on stream fd");
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd");
  std::unique_ptr<StreamPump> p(new StreamPump(capacity));
  p->fd_ = std::move(fd);
  p->stop_fd_.Reset(efd);
  p->thread_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

StreamPump::~StreamPump() {
  buffer_.Abort();  // releases a producer blocked in WaitForSpace
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void StreamPump::Run() {
  std::string chunk;
  for (;;) {
    size_t room = buffer_.WaitForSpace();
    if (room == 0) return;  // aborted
    struct pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      buffer_.SetEof();
      return;
    }
    if (fds[1].revents) return;
    if (!fds[0].revents) continue;
    chunk.resize(std::min<size_t>(room, 64 * 1024));
    ssize_t n = ::read(fd_.get(), chunk.data(), chunk.size());
    if (n > 0) {
      buffer_.Append(std::string_view(chunk.data(), static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    // 0: pipe EOF. EIO: pty master after the last slave fd closed. Any
    // other error also ends the stream.
    buffer_.SetEof();
    return;
  }
}

}  // namespace cask::agent
