#include "cmd/cask-agent/init.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <linux/magic.h>
#include <set>

#include "lib/base/fs.h"

namespace cask::agent {

std::vector<EarlyMount> EarlyMounts() {
  constexpr unsigned long kSafe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  return {
      {"proc", "/proc", "proc", kSafe, "", 0555},
      {"sysfs", "/sys", "sysfs", kSafe, "", 0555},
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666", 0755},
      {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
      {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
      {"cgroup2", "/sys/fs/cgroup", "cgroup2", kSafe, "nsdelegate", 0555},
  };
}

namespace {

long FsMagic(const std::string& fstype) {
  if (fstype == "proc") return PROC_SUPER_MAGIC;
  if (fstype == "sysfs") return SYSFS_MAGIC;
  if (fstype == "devtmpfs" || fstype == "tmpfs") return TMPFS_MAGIC;
  if (fstype == "devpts") return DEVPTS_SUPER_MAGIC;
  if (fstype == "cgroup2") return CGROUP2_SUPER_MAGIC;
  return 0;
}

// True when `path` is the root of a mount (its device differs from its
// parent's) and has the file-system type `fstype`.
bool IsMountedAs(const std::string& path, const std::string& fstype) {
  struct stat st, parent;
  if (::stat(path.c_str(), &st) != 0 || ::stat((path + "/..").c_str(), &parent) != 0) return false;
  if (st.st_dev == parent.st_dev) return false;
  struct statfs sfs;
  if (::statfs(path.c_str(), &sfs) != 0) return false;
  long magic = FsMagic(fstype);
  return magic == 0 || static_cast<long>(sfs.f_type) == magic;
}

}  // namespace

Status MountEarly(const EarlyMount& m) {
  if (::mkdir(m.target.c_str(), m.mode) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + m.target);
  if (IsMountedAs(m.target, m.fstype)) return Ok();
  if (::mount(m.source.c_str(), m.target.c_str(), m.fstype.c_str(), m.flags,
              m.data.empty() ? nullptr : m.data.c_str()) != 0)
    return Error::Sys(errno, "mount " + m.fstype + " on " + m.target);
  return Ok();
}

Status MountEarlyFilesystems() {
  for (const EarlyMount& m : EarlyMounts()) CASK_TRY(MountEarly(m));
  const std::pair<const char*, const char*> links[] = {
      {"/proc/self/fd", "/dev/fd"},
      {"/proc/self/fd/0", "/dev/stdin"},
      {"/proc/self/fd/1", "/dev/stdout"},
      {"/proc/self/fd/2", "/dev/stderr"},
  };
  for (const auto& [target, link] : links) {
    if (::symlink(target, link) != 0 && errno != EEXIST) return Error::Sys(errno, std::string("symlink ") + link);
  }
  return Ok();
}

int SetupConsole(const std::string& console) {
  int fd = ::open(console.c_str(), O_RDWR | O_NOCTTY);
  if (fd < 0) fd = ::open("/dev/null", O_RDWR);
  if (fd < 0) return -1;
  for (int i = 0; i < 3; ++i)
    if (fd != i) ::dup2(fd, i);
  if (fd > 2) ::close(fd);
  int log_fd = ::open(console.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
  return log_fd;
}

std::vector<std::string> WantedControllers() { return {"cpu", "memory", "pids", "io"}; }

Result<std::vector<std::string>> EnableControllers(const std::string& dir, const std::vector<std::string>& wanted) {
  CASK_ASSIGN_OR_RETURN(std::string available_text, ReadFile(JoinPath(dir, "cgroup.controllers")));
  std::set<std::string> available;
  size_t i = 0;
  while (i < available_text.size()) {
    size_t j = available_text.find_first_of(" \n", i);
    if (j == std::string::npos) j = available_text.size();
    if (j > i) available.insert(available_text.substr(i, j - i));
    i = j + 1;
  }
  std::vector<std::string> enabled;
  std::string control;
  for (const std::string& c : wanted) {
    if (!available.count(c)) continue;
    if (!control.empty()) control += ' ';
    control += "+" + c;
    enabled.push_back(c);
  }
  if (control.empty()) return enabled;
  // The file is not truncated by the kernel; write it in one write(2).
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(JoinPath(dir, "cgroup.subtree_control"), O_WRONLY));
  CASK_TRY_CTX(WriteAll(fd.get(), control), "enable controllers \"" + control + "\" in " + dir);
  return enabled;
}

Status SetupCgroups(const std::string& cgroup_mount, const std::string& cask_dir) {
  CASK_TRY_CTX(EnableControllers(cgroup_mount, WantedControllers()), "cgroup root");
  if (::mkdir(cask_dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + cask_dir);
  CASK_TRY_CTX(EnableControllers(cask_dir, WantedControllers()), "cgroup " + cask_dir);
  return Ok();
}

Status SetupProcessSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) return Error::Sys(err, "block SIGCHLD");
  // A handler rather than SIG_IGN: an ignored disposition survives execve
  // and would leak into container processes; a handler is reset there.
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = [](int) {};
  if (::sigaction(SIGPIPE, &sa, nullptr) != 0) return Error::Sys(errno, "catch SIGPIPE");
  return Ok();
}

Status PowerOff() {
  ::sync();
  if (::reboot(RB_POWER_OFF) != 0) return Error::Sys(errno, "reboot(RB_POWER_OFF)");
  return Ok();
}

}  // namespace cask::agent
