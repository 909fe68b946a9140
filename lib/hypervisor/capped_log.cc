#include "lib/hypervisor/capped_log.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "lib/base/fs.h"
#include "lib/hypervisor/virtiofsd.h"

namespace cask::hypervisor {

Result<std::unique_ptr<CappedLog>> CappedLog::Create(std::string path, size_t keep_bytes) {
  if (keep_bytes == 0) return Error::InvalidArgument("capped log " + path + ": keep_bytes is 0");
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600));
  return std::unique_ptr<CappedLog>(new CappedLog(std::move(path), keep_bytes, std::move(fd)));
}

void CappedLog::TrimLocked() {
  if (buf_.size() > 2 * keep_) buf_.erase(0, buf_.size() - keep_);
}

void CappedLog::Append(std::string_view data) {
  MutexLock l(mu_);
  total_ += data.size();
  if (data.size() >= keep_) {
    buf_.assign(data.substr(data.size() - keep_));
  } else {
    buf_.append(data);
    TrimLocked();
  }
  if (!fd_) return;
  if (file_size_ + data.size() > 2 * keep_) {
    // Rewrite the file with the kept tail only.
    std::string_view kept(buf_);
    if (kept.size() > keep_) kept.remove_prefix(kept.size() - keep_);
    if (::ftruncate(fd_.get(), 0) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) < 0 || !WriteAll(fd_.get(), kept).ok()) {
      fd_.Reset();  // give the file up; the memory tail goes on
      return;
    }
    file_size_ = kept.size();
    return;
  }
  if (!WriteAll(fd_.get(), data).ok()) {
    fd_.Reset();
    return;
  }
  file_size_ += data.size();
}

std::string CappedLog::Tail(size_t max_bytes) const {
  MutexLock l(mu_);
  size_t n = std::min({max_bytes, keep_, buf_.size()});
  std::string out = buf_.substr(buf_.size() - n);
  if (n < buf_.size()) {
    size_t nl = out.find('\n');
    if (nl != std::string::npos && nl + 1 < out.size()) out.erase(0, nl + 1);
  }
  return out;
}

uint64_t CappedLog::total_bytes() const {
  MutexLock l(mu_);
  return total_;
}

uint64_t CappedLog::file_bytes() const {
  MutexLock l(mu_);
  return file_size_;
}

void CappedLog::RemoveFile() {
  MutexLock l(mu_);
  fd_.Reset();
  ::unlink(path_.c_str());
  file_size_ = 0;
}

LineLimiter::LineLimiter(Sink sink, size_t bytes_per_sec, size_t burst_bytes, size_t max_line)
    : sink_(std::move(sink)),
      rate_(static_cast<double>(bytes_per_sec)),
      burst_(static_cast<double>(burst_bytes)),
      max_line_(max_line),
      tokens_(static_cast<double>(burst_bytes)),
      last_(Clock::now()) {}

void LineLimiter::Refill(Clock::time_point now) {
  if (now <= last_) return;
  double secs = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(burst_, tokens_ + secs * rate_);
  last_ = now;
}

void LineLimiter::Emit(std::string_view line, Clock::time_point now) {
  Refill(now);
  double cost = static_cast<double>(line.size() + 1);
  if (tokens_ < cost) {
    dropped_pending_ += line.size() + 1;
    dropped_total_ += line.size() + 1;
    return;
  }
  if (dropped_pending_ > 0) {
    std::string note = "[" + std::to_string(dropped_pending_) + " bytes of output not logged: rate limit]";
    dropped_pending_ = 0;
    sink_(note);
  }
  tokens_ -= cost;
  sink_(line);
}

void LineLimiter::Feed(std::string_view data, Clock::time_point now) {
  while (!data.empty()) {
    size_t nl = data.find('\n');
    std::string_view piece = data.substr(0, nl);
    // Bounded: at most max_line_ bytes of a line are held.
    if (partial_.size() < max_line_) {
      size_t room = max_line_ - partial_.size();
      partial_.append(piece.substr(0, room));
      if (piece.size() > room) partial_cut_ = true;
    } else if (!piece.empty()) {
      partial_cut_ = true;
    }
    if (nl == std::string_view::npos) return;
    data.remove_prefix(nl + 1);
    while (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    if (partial_cut_) partial_ += "...";
    if (!partial_.empty()) Emit(partial_, now);
    partial_.clear();
    partial_cut_ = false;
  }
}

void LineLimiter::Flush(Clock::time_point now) {
  if (!partial_.empty()) {
    if (partial_cut_) partial_ += "...";
    Emit(partial_, now);
  }
  partial_.clear();
  partial_cut_ = false;
  Refill(now);
  if (dropped_pending_ > 0 && tokens_ >= 1) {
    sink_("[" + std::to_string(dropped_pending_) + " bytes of output not logged: rate limit]");
    dropped_pending_ = 0;
  }
}

void PumpVmLogs(int wake_fd, int console_fd, CappedLog* console, const Logger& console_logger,
                std::vector<PumpStream> streams) {
  constexpr size_t kChunkBytes = 256 * 1024;
  LineLimiter lines([&console_logger](std::string_view l) { console_logger.Info("guest console", {{"line", std::string(l)}}); },
                    4 * 1024, 32 * 1024, 1024);
  std::string buf(64 * 1024, '\0');
  // Reads what is there now, up to kChunkBytes; false at EOF/error.
  auto drain_console = [&]() -> bool {
    size_t got = 0;
    while (got < kChunkBytes) {
      ssize_t n = ::read(console_fd, buf.data(), buf.size());
      if (n > 0) {
        std::string_view data(buf.data(), static_cast<size_t>(n));
        if (console != nullptr) console->Append(data);
        lines.Feed(data);
        got += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
  };
  auto drain_stream = [&](PumpStream& s) {
    if (DrainInto(s.fd, s.log, kChunkBytes)) return;
    if (s.eof != nullptr) *s.eof = true;
    s.fd = -1;
  };
  bool console_open = console_fd >= 0;
  for (;;) {
    std::vector<pollfd> p;
    p.push_back({wake_fd, POLLIN, 0});
    if (console_open) p.push_back({console_fd, POLLIN, 0});
    for (const PumpStream& s : streams)
      if (s.fd >= 0) p.push_back({s.fd, POLLIN, 0});
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    size_t k = 1;
    if (console_open && p[k++].revents != 0) console_open = drain_console();
    for (PumpStream& s : streams) {
      if (s.fd < 0) continue;
      if (p[k++].revents != 0) drain_stream(s);
    }
    if (p[0].revents != 0) {
      // Stopping: take what is still buffered (bounded) and end.
      if (console_open) (void)drain_console();
      for (PumpStream& s : streams)
        if (s.fd >= 0) drain_stream(s);
      break;
    }
  }
  lines.Flush();
}

}  // namespace cask::hypervisor
