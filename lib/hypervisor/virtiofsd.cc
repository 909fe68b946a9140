#include "lib/hypervisor/virtiofsd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "lib/base/fs.h"
#include "lib/hypervisor/sockets.h"

namespace cask::hypervisor {
namespace {

std::string LogTail(const std::string& path, size_t max) {
  auto text = ReadFile(path);
  if (!text.ok()) return "";
  std::string s = std::move(*text);
  if (s.size() > max) s = s.substr(s.size() - max);
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

Result<ChildProcess> StartVirtiofsd(const VirtiofsdOptions& o, std::chrono::milliseconds timeout) {
  CASK_TRY(ValidateVirtiofsdOptions(o));
  if (::unlink(o.socket_path.c_str()) != 0 && errno != ENOENT)
    return Error::Sys(errno, "remove stale socket " + o.socket_path);
  CASK_ASSIGN_OR_RETURN(UniqueFd log, Open(o.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600));
  SpawnOptions so;
  so.stderr_fd = log.get();
  so.cgroup_procs_fds = o.cgroup_procs_fds;
  CASK_ASSIGN_OR_RETURN(ChildProcess child, Spawn(VirtiofsdArgv(o), so).Context("start virtiofsd " + o.binary));
  log.Reset();

  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (IsSocket(o.socket_path)) return child;
    auto st = child.TryWait();
    if (!st.ok()) return std::move(st).error().Wrap("wait for virtiofsd");
    if (st->has_value()) {
      std::string tail = LogTail(o.log_path, 2048);
      return Error::Internal("virtiofsd exited with status " + std::to_string(**st) + " before creating " +
                             o.socket_path + (tail.empty() ? "" : ": " + tail));
    }
    if (Clock::now() >= deadline) {
      std::string tail = LogTail(o.log_path, 2048);
      (void)child.Terminate(std::chrono::milliseconds(500));
      return Error::DeadlineExceeded("virtiofsd did not create " + o.socket_path + " within " +
                                     std::to_string(timeout.count()) + " ms" + (tail.empty() ? "" : ": " + tail));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace cask::hypervisor
