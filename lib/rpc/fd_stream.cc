#include "lib/rpc/fd_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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
  return std::unique_ptr<FdStream>(new FdStream(std::move(fd), std::move(wake), S_ISSOCK(st.st_mode)));
}

FdStream::FdStream(UniqueFd fd, UniqueFd wake, bool is_socket)
    : fd_(std::move(fd)), wake_(std::move(wake)), is_socket_(is_socket) {}

ssize_t FdStream::WriteSome(std::string_view data) {
  // On a socket whose peer is gone, write(2) would raise SIGPIPE and kill
  // the process; send(2) with MSG_NOSIGNAL reports EPIPE instead. Other fds
  // (character devices) take plain write(2).
  if (is_socket_) return ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
  return ::write(fd_.get(), data.data(), data.size());
}

Result<bool> FdStream::Wait(short events, std::optional<Clock::time_point> deadline) {
  for (;;) {
    struct pollfd p[2] = {{fd_.get(), events, 0}, {wake_.get(), POLLIN, 0}};
    int n = ::poll(p, 2, PollTimeout(deadline));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::Sys(errno, "ttrpc stream: poll");
    }
    if (p[1].revents) return Cancelled();
    // POLLHUP/POLLERR: let the read or write report what happened.
    if (p[0].revents) return true;
    if (n == 0 && deadline && Clock::now() >= *deadline) return false;
  }
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
  while (!data.empty()) {
    ssize_t n = WriteSome(data);
    if (n > 0) {
      started = true;
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) {
      // The peer is gone: an ordinary end of the connection.
      if (errno == EPIPE || errno == ECONNRESET) return Error::Unavailable("ttrpc stream: peer closed the connection");
      return Error::Sys(errno, "ttrpc stream: write");
    }
    // Once a frame is partly out, finish it whatever the deadline.
    CASK_ASSIGN_OR_RETURN(bool ready, Wait(POLLOUT, started ? std::nullopt : deadline));
    if (!ready) return Error::DeadlineExceeded("ttrpc stream: write deadline");
  }
  return Ok();
}

void FdStream::Wake() {
  woken_.store(true);
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
