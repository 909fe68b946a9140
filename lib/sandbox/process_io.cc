#include "lib/sandbox/process_io.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <string_view>
#include <vector>

namespace cask::sandbox {

namespace {

// Writes everything to a possibly non-blocking fd. False on a hard error
// (EPIPE, EBADF, ...).
bool WriteAllBlocking(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {fd, POLLOUT, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR) return false;
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Back-off after a call that moved no bytes (a full guest stdin, an empty
// non-EOF read from a confused agent): doubles from kMinBackoff up to
// kMaxBackoff, reset by any progress. Bounds the calls per second such a
// stream can cause, so the host never spins on the agent.
constexpr auto kMinBackoff = std::chrono::milliseconds(1);
constexpr auto kMaxBackoff = std::chrono::milliseconds(100);

class Backoff {
 public:
  // Sleeps, unless `cancel_fd` (if valid) becomes readable first. Returns
  // false when cancelled.
  bool Wait(int cancel_fd) {
    auto d = delay_;
    delay_ = std::min(delay_ * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
    if (cancel_fd < 0) {
      std::this_thread::sleep_for(d);
      return true;
    }
    struct pollfd p = {cancel_fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(d.count()));
    return !(r > 0 && p.revents != 0);
  }
  void Reset() { delay_ = kMinBackoff; }

 private:
  std::chrono::milliseconds delay_ = kMinBackoff;
};

}  // namespace

Result<std::unique_ptr<ProcessIoPump>> ProcessIoPump::Start(AgentClient& agent, std::string container_id,
                                                            std::string exec_id, ProcessIoFds fds) {
  return Start(agent, std::move(container_id), std::move(exec_id), std::move(fds), Options{});
}

Result<std::unique_ptr<ProcessIoPump>> ProcessIoPump::Start(AgentClient& agent, std::string container_id,
                                                            std::string exec_id, ProcessIoFds fds, Options opts) {
  std::unique_ptr<ProcessIoPump> p(new ProcessIoPump(agent, std::move(container_id), std::move(exec_id), opts));
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd for the stdio pump");
  p->cancel_fd_.Reset(efd);
  {
    std::lock_guard<std::mutex> l(p->mu_);
    p->outputs_running_ = (fds.stdout_fd.valid() ? 1 : 0) + (fds.stderr_fd.valid() ? 1 : 0);
  }
  if (fds.stdout_fd.valid())
    p->stdout_thread_ = std::thread(&ProcessIoPump::CopyOutput, p.get(), false, std::move(fds.stdout_fd));
  if (fds.stderr_fd.valid())
    p->stderr_thread_ = std::thread(&ProcessIoPump::CopyOutput, p.get(), true, std::move(fds.stderr_fd));
  if (fds.stdin_fd.valid())
    p->stdin_thread_ = std::thread(&ProcessIoPump::CopyStdin, p.get(), std::move(fds.stdin_fd));
  return p;
}

ProcessIoPump::ProcessIoPump(AgentClient& agent, std::string container_id, std::string exec_id, Options opts)
    : agent_(agent), container_id_(std::move(container_id)), exec_id_(std::move(exec_id)), opts_(opts) {}

ProcessIoPump::~ProcessIoPump() {
  StopStdin();
  if (stdin_thread_.joinable()) stdin_thread_.join();
  if (stdout_thread_.joinable()) stdout_thread_.join();
  if (stderr_thread_.joinable()) stderr_thread_.join();
}

void ProcessIoPump::StopStdin() {
  if (!cancel_fd_.valid()) return;
  uint64_t one = 1;
  // An eventfd write only fails when the counter would overflow: already set.
  [[maybe_unused]] ssize_t n = ::write(cancel_fd_.get(), &one, sizeof one);
}

void ProcessIoPump::CopyStdin(UniqueFd in) {
  std::vector<char> buf(opts_.write_chunk);
  for (;;) {
    struct pollfd p[2] = {{in.get(), POLLIN, 0}, {cancel_fd_.get(), POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;  // StopStdin(): leave the guest's stdin as it is
    if (p[0].revents == 0) continue;
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;  // treat a broken input like EOF
    }
    if (n == 0) break;
    std::string_view data(buf.data(), static_cast<size_t>(n));
    Backoff backoff;
    while (!data.empty()) {
      auto w = agent_.WriteStdin(container_id_, exec_id_, data);
      // The process has exited or closed its stdin: nothing more to send.
      if (!w.ok()) return;
      if (*w == 0) {
        // The guest's stdin pipe is full: try again later. This is the
        // back-pressure: the host holds one chunk, the guest its pipe.
        if (!backoff.Wait(cancel_fd_.get())) return;  // StopStdin()
        continue;
      }
      backoff.Reset();
      data.remove_prefix(*w);
    }
  }
  // EOF on the host side: tell the process. Failure means it is gone.
  (void)agent_.CloseStdin(container_id_, exec_id_);
}

void ProcessIoPump::CopyOutput(bool is_stderr, UniqueFd out) {
  bool host_ok = true;
  std::optional<Error> err;
  Backoff backoff;
  for (;;) {
    auto chunk = is_stderr ? agent_.ReadStderr(container_id_, exec_id_, opts_.read_chunk)
                           : agent_.ReadStdout(container_id_, exec_id_, opts_.read_chunk);
    if (!chunk.ok()) {
      err = std::move(chunk).error().Wrap(is_stderr ? "copying stderr" : "copying stdout");
      break;
    }
    if (chunk->eof) {
      if (host_ok && !chunk->data.empty()) host_ok = WriteAllBlocking(out.get(), chunk->data);
      break;
    }
    if (chunk->data.empty()) {
      // Not EOF and no data: the agent should have waited. Do not spin.
      backoff.Wait(-1);
      continue;
    }
    backoff.Reset();
    if (host_ok) host_ok = WriteAllBlocking(out.get(), chunk->data);
  }
  out.Reset();
  OutputDone(std::move(err));
}

void ProcessIoPump::OutputDone(std::optional<Error> err) {
  std::lock_guard<std::mutex> l(mu_);
  if (err && !first_error_) first_error_ = std::move(err);
  --outputs_running_;
  cv_.notify_all();
}

void ProcessIoPump::WaitDrained() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return outputs_running_ == 0; });
}

bool ProcessIoPump::WaitDrainedFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [&] { return outputs_running_ == 0; });
}

Status ProcessIoPump::status() const {
  std::lock_guard<std::mutex> l(mu_);
  if (first_error_) return *first_error_;
  return Ok();
}

}  // namespace cask::sandbox
