#include "lib/rpc/fd_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>

namespace cask::rpc::internal {
namespace {

Error Cancelled() { return Error(Code::kCancelled, "connection closed locally"); }

// Milliseconds to pass to poll(2) for `deadline` (-1 = forever), rounded up
// so that a wake-up never comes before the deadline.
int PollTimeout(std::optional<FdStream::Clock::time_point> deadline) {
  if (!deadline) return -1;
  auto left = *deadline - FdStream::Clock::now();
  if (left <= decltype(left)::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

}  // namespace

Result<std::unique_ptr<FdStream>> FdStream::Make(UniqueFd fd) {
  if (!fd.valid()) return Error::InvalidArgument("ttrpc stream: invalid fd");
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0) return Error::Sys(errno, "ttrpc stream: fcntl(F_GETFL)");
  if (!(flags & O_NONBLOCK) && ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    return Error::Sys(errno, "ttrpc stream: fcntl(F_SETFL, O_NONBLOCK)");
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return Error::Sys(errno, "ttrpc stream: fstat");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return Error::Sys(errno, "ttrpc stream: eventfd");
  const bool is_socket = S_ISSOCK(st.st_mode);
  UniqueFd room_wanted;
  if (!is_socket) {
    room_wanted.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!room_wanted.valid()) return Error::Sys(errno, "ttrpc stream: eventfd");
  }
  return std::unique_ptr<FdStream>(new FdStream(std::move(fd), std::move(wake), std::move(room_wanted), is_socket));
}

FdStream::FdStream(UniqueFd fd, UniqueFd wake, UniqueFd room_wanted, bool is_socket)
    : fd_(std::move(fd)), wake_(std::move(wake)), room_wanted_(std::move(room_wanted)), is_socket_(is_socket) {}

ssize_t FdStream::WriteSome(const struct iovec* iov, int count) {
  // On a socket whose peer is gone, write(2) would raise SIGPIPE and kill
  // the process; sendmsg(2) with MSG_NOSIGNAL reports EPIPE instead. Other
  // fds (character devices) take plain writev(2).
  if (is_socket_) {
    struct msghdr m = {};
    m.msg_iov = const_cast<struct iovec*>(iov);
    m.msg_iovlen = static_cast<size_t>(count);
    return ::sendmsg(fd_.get(), &m, MSG_NOSIGNAL);
  }
  if (count == 1) return ::write(fd_.get(), iov[0].iov_base, iov[0].iov_len);
  return ::writev(fd_.get(), iov, count);
}

Result<bool> FdStream::Wait(short events, std::optional<Clock::time_point> deadline) {
  // The reader of a character device also watches for room on behalf of
  // waiting writers (WaitWritable), and for their requests to (room_wanted_).
  const bool device_reader = !is_socket_ && (events & POLLIN);
  for (;;) {
    bool want_room = false;
    if (device_reader) {
      std::lock_guard<std::mutex> lock(room_mu_);
      want_room = room_waiters_;
    }
    struct pollfd p[3] = {{fd_.get(), static_cast<short>(events | (want_room ? POLLOUT : 0)), 0},
                          {wake_.get(), POLLIN, 0},
                          {device_reader ? room_wanted_.get() : -1, POLLIN, 0}};
    int n = ::poll(p, 3, PollTimeout(deadline));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::Sys(errno, "ttrpc stream: poll");
    }
    if (p[1].revents) return Cancelled();
    if (p[2].revents) {
      uint64_t count;
      [[maybe_unused]] ssize_t r = ::read(room_wanted_.get(), &count, sizeof count);  // EAGAIN: fine
    }
    if (device_reader && (p[0].revents & (POLLOUT | POLLHUP | POLLERR))) {
      std::lock_guard<std::mutex> lock(room_mu_);
      if (room_waiters_) {
        room_waiters_ = false;
        ++room_gen_;
        room_cv_.notify_all();
      }
    }
    // POLLHUP/POLLERR/POLLNVAL: let the read or write report what happened.
    if (p[0].revents & (events | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (n == 0 && deadline && Clock::now() >= *deadline) return false;
  }
}

Result<bool> FdStream::WaitWritable(std::optional<Clock::time_point> deadline) {
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(room_mu_);
    gen = room_gen_;
    room_waiters_ = true;
  }
  uint64_t one = 1;
  // A failed write means the counter is already non-zero: the reader will look.
  [[maybe_unused]] ssize_t w = ::write(room_wanted_.get(), &one, sizeof one);
  Clock::time_point until = Clock::now() + kWriterRetry;
  if (deadline && *deadline < until) until = *deadline;
  std::unique_lock<std::mutex> lock(room_mu_);
  room_cv_.wait_until(lock, until, [&] { return room_gen_ != gen || woken_.load(); });
  if (woken_.load()) return Cancelled();
  if (room_gen_ == gen && deadline && Clock::now() >= *deadline) return false;
  return true;  // told, or time to try again
}

Result<size_t> FdStream::Read(char* buf, size_t cap, std::optional<Clock::time_point> deadline) {
  for (;;) {
    if (woken_.load()) return Cancelled();
    CASK_ASSIGN_OR_RETURN(bool ready, Wait(POLLIN, deadline));
    if (!ready) return Error::DeadlineExceeded("ttrpc stream: read deadline");
    ssize_t n = ::read(fd_.get(), buf, cap);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EAGAIN || errno == EINTR) continue;
    // A reset by the peer is an ordinary end of stream.
    if (errno == ECONNRESET) return size_t{0};
    return Error::Sys(errno, "ttrpc stream: read");
  }
}

Status FdStream::WriteAll(std::string_view data, std::optional<Clock::time_point> deadline) {
  return WriteAll(data, std::string_view(), deadline);
}

Status FdStream::WriteAll(std::string_view first, std::string_view second,
                          std::optional<Clock::time_point> deadline) {
  {
    std::unique_lock<std::mutex> lock(write_mu_);
    auto slot_free = [this] { return !writing_; };
    if (deadline) {
      if (!write_cv_.wait_until(lock, *deadline, slot_free))
        return Error::DeadlineExceeded("ttrpc stream: write deadline");
    } else {
      write_cv_.wait(lock, slot_free);
    }
    if (closed_ || woken_.load()) return Cancelled();
    writing_ = true;
  }
  struct SlotRelease {
    FdStream* s;
    ~SlotRelease() {
      std::lock_guard<std::mutex> l(s->write_mu_);
      s->writing_ = false;
      s->write_cv_.notify_all();
    }
  } release{this};
  bool started = false;
  std::string_view parts[2] = {first, second};
  int i = parts[0].empty() ? 1 : 0;
  while (i < 2 && !parts[i].empty()) {
    struct iovec iov[2];
    int count = 0;
    for (int k = i; k < 2; ++k) {
      if (parts[k].empty()) continue;
      iov[count].iov_base = const_cast<char*>(parts[k].data());
      iov[count].iov_len = parts[k].size();
      ++count;
    }
    ssize_t n = WriteSome(iov, count);
    if (n > 0) {
      started = true;
      size_t left = static_cast<size_t>(n);
      while (left > 0 && i < 2) {
        size_t m = std::min(left, parts[i].size());
        parts[i].remove_prefix(m);
        left -= m;
        if (parts[i].empty()) ++i;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      // The peer is gone: an ordinary end of the connection.
      if (errno == EPIPE || errno == ECONNRESET) return Error::Unavailable("ttrpc stream: peer closed the connection");
      return Error::Sys(errno, "ttrpc stream: write");
    }
    // Once a frame is partly out, finish it whatever the deadline.
    const std::optional<Clock::time_point> until = started ? std::nullopt : deadline;
    CASK_ASSIGN_OR_RETURN(bool ready, is_socket_ ? Wait(POLLOUT, until) : WaitWritable(until));
    if (!ready) return Error::DeadlineExceeded("ttrpc stream: write deadline");
  }
  return Ok();
}

void FdStream::Wake() {
  woken_.store(true);
  {
    // Writers waiting for room see woken_ now.
    std::lock_guard<std::mutex> lock(room_mu_);
    room_cv_.notify_all();
  }
  uint64_t one = 1;
  // The eventfd is never read, so it stays readable: every later poll sees it.
  // A failed write means the counter is already non-zero.
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

void FdStream::Close() {
  Wake();
  // A writer in progress sees the wake-up in its poll and returns; the fd
  // is closed only once no writer uses it.
  std::unique_lock<std::mutex> lock(write_mu_);
  write_cv_.wait(lock, [this] { return !writing_; });
  if (closed_) return;
  closed_ = true;
  fd_.Reset();
}

}  // namespace cask::rpc::internal
