#include "lib/hypervisor/virtiofsd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "lib/base/fs.h"
#include "lib/hypervisor/sockets.h"

namespace cask::hypervisor {
namespace {

std::string LogTail(const CappedLog* log, size_t max) {
  if (log == nullptr) return "";
  std::string s = log->Tail(max);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool IsSocket(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

std::vector<std::string> VirtiofsdArgv(const VirtiofsdOptions& o) {
  return {o.binary, "--socket-path=" + o.socket_path, "-o", "source=" + o.source, "-o", "cache=" + o.cache,
          "-o", "sandbox=namespace", "-o", "modcaps=-mknod:-fsetid"};
}

Status ValidateVirtiofsdOptions(const VirtiofsdOptions& o) {
  if (o.cache != "auto" && o.cache != "always" && o.cache != "none")
    return Error::InvalidArgument("hypervisor.virtiofs_cache: must be auto, always or none, got \"" + o.cache + "\"");
  if (o.source.empty() || o.source.front() != '/')
    return Error::InvalidArgument("shared directory must be an absolute path, got \"" + o.source + "\"");
  if (o.source.find(',') != std::string::npos)
    return Error::InvalidArgument("shared directory " + o.source + " contains ',', which virtiofsd cannot parse");
  return Ok();
}

bool DrainInto(int fd, CappedLog* log, size_t max_bytes) {
  char buf[16384];
  size_t got = 0;
  while (got < max_bytes) {
    ssize_t n = ::read(fd, buf, std::min(sizeof buf, max_bytes - got));
    if (n > 0) {
      if (log != nullptr) log->Append(std::string_view(buf, static_cast<size_t>(n)));
      got += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;  // EOF or error
  }
  return true;
}

Result<VirtiofsdProcess> StartVirtiofsd(const VirtiofsdOptions& o, std::chrono::milliseconds timeout) {
  CASK_TRY(ValidateVirtiofsdOptions(o));
  if (::unlink(o.socket_path.c_str()) != 0 && errno != ENOENT)
    return Error::Sys(errno, "remove stale socket " + o.socket_path);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe for virtiofsd's stderr");
  UniqueFd read_end(p[0]), write_end(p[1]);
  if (::fcntl(read_end.get(), F_SETFL, O_NONBLOCK) != 0) return Error::Sys(errno, "make virtiofsd's stderr non-blocking");
  SpawnOptions so;
  so.stderr_fd = write_end.get();
  so.cgroup_procs_fds = o.cgroup_procs_fds;
  CASK_ASSIGN_OR_RETURN(ChildProcess child, Spawn(VirtiofsdArgv(o), so).Context("start virtiofsd " + o.binary));
  write_end.Reset();

  auto deadline = Clock::now() + timeout;
  for (;;) {
    (void)DrainInto(read_end.get(), o.log, 1 << 20);
    if (IsSocket(o.socket_path)) return VirtiofsdProcess{std::move(child), std::move(read_end)};
    auto st = child.TryWait();
    if (!st.ok()) return std::move(st).error().Wrap("wait for virtiofsd");
    if (st->has_value()) {
      (void)DrainInto(read_end.get(), o.log, 1 << 20);
      std::string tail = LogTail(o.log, 2048);
      return Error::Internal("virtiofsd exited with status " + std::to_string(**st) + " before creating " +
                             o.socket_path + (tail.empty() ? "" : ": " + tail));
    }
    if (Clock::now() >= deadline) {
      std::string tail = LogTail(o.log, 2048);
      (void)child.Terminate(std::chrono::milliseconds(500));
      return Error::DeadlineExceeded("virtiofsd did not create " + o.socket_path + " within " +
                                     std::to_string(timeout.count()) + " ms" + (tail.empty() ? "" : ": " + tail));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace cask::hypervisor
