#include "lib/base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace cask {

Result<UniqueFd> Open(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    // The one meaning callers rely on: the path does not exist.
    int err = errno;
    return Error::Sys(err == ENOENT || err == ENOTDIR ? Code::kNotFound : Code::kInternal, err, "open " + path);
  }
  return UniqueFd(fd);
}

Result<std::string> ReadFile(const std::string& path) {
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(path, O_RDONLY));
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::Sys(errno, "read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::Sys(errno, "write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Status ReadFull(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Error::Sys(errno, "read");
    }
    if (r == 0) return Error::Unavailable("end of stream");
    got += static_cast<size_t>(r);
  }
  return Ok();
}

Status WriteFile(const std::string& path, std::string_view data, mode_t mode) {
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(path, O_WRONLY | O_CREAT | O_TRUNC, mode));
  return WriteAll(fd.get(), data).Context("write " + path);
}

Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  std::string tmp = JoinPath(Dirname(path), "." + Basename(path) + ".tmp");
  CASK_TRY(WriteFile(tmp, data, mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error::Sys(err, "rename " + tmp + " to " + path);
  }
  return Ok();
}

Status MkdirAll(const std::string& path, mode_t mode) {
  if (path.empty()) return Ok();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Ok();
    return Error(Code::kAlreadyExists, "mkdir " + path + ": exists and is not a directory");
  }
  std::string parent = Dirname(path);
  if (parent != path) CASK_TRY(MkdirAll(parent, mode));
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + path);
  return Ok();
}

namespace {
// True when `name` (relative to dirfd) is the root of a mount, bind mounts
// from the same filesystem included (st_dev alone cannot see those).
bool IsMountRoot(int dirfd, const std::string& name) {
  struct statx stx;
  if (::statx(dirfd, name.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) != 0) return false;
  return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

Status RemoveAt(int dirfd, const std::string& name, const std::string& display, dev_t dev) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok();
    return Error::Sys(errno, "stat " + display);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT)
      return Error::Sys(errno, "unlink " + display);
    return Ok();
  }
  if (st.st_dev != dev || IsMountRoot(dirfd, name))
    return Error::FailedPrecondition("refusing to remove mount point " + display);
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Error::Sys(errno, "open " + display);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return Error::Sys(errno, "opendir " + display);
  }
  Status st_result;
  while (struct dirent* e = ::readdir(d)) {
    std::string child = e->d_name;
    if (child == "." || child == "..") continue;
    auto r = RemoveAt(::dirfd(d), child, display + "/" + child, dev);
    if (!r.ok()) {
      st_result = std::move(r);
      break;
    }
  }
  ::closedir(d);
  if (!st_result.ok()) return st_result;
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return Error::Sys(errno, "rmdir " + display);
  return Ok();
}
}  // namespace

Status RemoveAll(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return Error::Sys(errno, "stat " + path);
  }
  std::string parent = Dirname(path);
  struct stat pst;
  if (::stat(parent.c_str(), &pst) != 0) return Error::Sys(errno, "stat " + parent);
  if (S_ISDIR(st.st_mode) && (st.st_dev != pst.st_dev || IsMountRoot(AT_FDCWD, path)))
    return Error::FailedPrecondition("refusing to remove mount point " + path);
  return RemoveAt(AT_FDCWD, path, path, st.st_dev);
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string Dirname(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string Basename(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

std::string JoinPath(std::string_view a, std::string_view b) {
  std::string out(a);
  while (!out.empty() && out.back() == '/') out.pop_back();
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  out += '/';
  out += b;
  return out;
}

}  // namespace cask
