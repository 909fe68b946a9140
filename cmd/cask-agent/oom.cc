#include "cmd/cask-agent/oom.h"

#include <algorithm>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "lib/base/fs.h"

namespace cask::agent {

uint64_t ParseOomKillCount(std::string_view text) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    constexpr std::string_view kKey = "oom_kill ";
    if (line.substr(0, kKey.size()) == kKey) {
      std::string value(line.substr(kKey.size()));
      return std::strtoull(value.c_str(), nullptr, 10);
    }
  }
  return 0;
}

OomWatcher::~OomWatcher() { Stop(); }

Status OomWatcher::Start() {
  if (thread_.joinable()) return Error::FailedPrecondition("oom watcher already started");
  int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return Error::Sys(errno, "inotify_init1");
  inotify_fd_.Reset(fd);
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd");
  stop_fd_.Reset(efd);
  thread_ = std::thread([this] { Run(); });
  return Ok();
}

void OomWatcher::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(stop_fd_.get(), &one, sizeof one);
  thread_.join();
}

Status OomWatcher::Watch(const std::string& id, const std::string& path) {
  if (!inotify_fd_) return Error::FailedPrecondition("oom watcher not started");
  CASK_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::lock_guard<std::mutex> lock(mu_);
  int wd = ::inotify_add_watch(inotify_fd_.get(), path.c_str(), IN_MODIFY);
  if (wd < 0) return Error::Sys(errno, "inotify_add_watch " + path);
  watched_[id] = Watched{path, wd, ParseOomKillCount(text)};
  by_wd_[wd] = id;
  return Ok();
}

void OomWatcher::Unwatch(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watched_.find(id);
  if (it == watched_.end()) return;
  // The cgroup may already be gone (the kernel then dropped the watch).
  ::inotify_rm_watch(inotify_fd_.get(), it->second.wd);
  by_wd_.erase(it->second.wd);
  watched_.erase(it);
}

void OomWatcher::Check(const std::string& id) {
  std::string path;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = watched_.find(id);
    if (it == watched_.end()) return;
    path = it->second.path;
  }
  auto text = ReadFile(path);
  if (!text.ok()) return;
  uint64_t count = ParseOomKillCount(*text);
  std::function<void()> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = watched_.find(id);
    if (it == watched_.end() || count <= it->second.oom_kills) return;
    it->second.oom_kills = count;
    // Coalesced: a container already queued is not queued twice.
    if (std::find(queue_.begin(), queue_.end(), id) == queue_.end()) queue_.push_back(id);
    while (queue_.size() > kMaxQueued) queue_.pop_front();
    cv_.notify_all();
    listener = listener_;
  }
  if (listener) listener();
}

void OomWatcher::SetListener(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(fn);
}

std::optional<std::string> OomWatcher::TryNext() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_.empty()) return std::nullopt;
  std::string id = std::move(queue_.front());
  queue_.pop_front();
  return id;
}

Result<std::string> OomWatcher::Next(const WaitLimits& limits) {
  std::unique_lock<std::mutex> lock(mu_);
  CASK_TRY(limits.Wait(lock, cv_, [&] { return !queue_.empty(); }));
  std::string id = std::move(queue_.front());
  queue_.pop_front();
  return id;
}

void OomWatcher::Interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

void OomWatcher::Run() {
  alignas(struct inotify_event) char buf[4096];
  for (;;) {
    struct pollfd fds[2] = {{inotify_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    if (!fds[0].revents) continue;
    ssize_t n = ::read(inotify_fd_.get(), buf, sizeof buf);
    if (n <= 0) continue;
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(p);
        auto it = by_wd_.find(ev->wd);
        if (it != by_wd_.end()) ids.push_back(it->second);
        p += sizeof(struct inotify_event) + ev->len;
      }
    }
    for (const std::string& id : ids) Check(id);
  }
}

}  // namespace cask::agent
