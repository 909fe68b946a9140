#include "lib/shim/vm_record.h"

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "lib/base/fs.h"
#include "lib/sandbox/shared_dir.h"
#include "lib/shim/address.h"

namespace cask::shim {
namespace {

bool ShimAlive(const std::string& bundle) {
  auto addr = ReadFile(JoinPath(bundle, "address"));
  if (!addr.ok()) return false;
  auto path = SocketPath(*addr);
  if (!path.ok()) return false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path->data(), std::min(path->size(), sizeof(sa.sun_path) - 1));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  ::close(fd);
  return ok;
}

// Pids whose argv contains `needle`.
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 1 || pid == ::getpid()) continue;
    auto cmd = ReadFile("/proc/" + std::string(e->d_name) + "/cmdline");
    if (cmd.ok() && cmd->find(needle) != std::string::npos) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

}  // namespace

Status WriteVmRecord(const std::string& bundle, const std::string& vm_dir) {
  return WriteFileAtomic(JoinPath(bundle, kVmRecordFile), vm_dir, 0600);
}

void RemoveVmRecord(const std::string& bundle) { ::unlink(JoinPath(bundle, kVmRecordFile).c_str()); }

Status CleanupDeadVm(const std::string& bundle) {
  const std::string record = JoinPath(bundle, kVmRecordFile);
  auto dir = ReadFile(record);
  if (!dir.ok()) return Ok();  // no VM was ever recorded here
  if (dir->empty() || (*dir)[0] != '/' || dir->find('\n') != std::string::npos)
    return Error::InvalidArgument(record + ": not an absolute directory path");
  if (ShimAlive(bundle)) return Ok();  // the shim still owns its VM
  const std::string needle = *dir + "/";
  for (pid_t pid : ProcessesMentioning(needle)) ::kill(pid, SIGKILL);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!ProcessesMentioning(needle).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (PathExists(*dir)) {
    CASK_TRY_CTX(sandbox::UnmountAllUnder(*dir), "clean up VM directory " + *dir);
    CASK_TRY_CTX(sandbox::RemoveTreeNoMounts(*dir), "clean up VM directory " + *dir);
  }
  ::unlink(record.c_str());
  return Ok();
}

}  // namespace cask::shim
