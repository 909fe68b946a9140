#include "lib/base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <vector>

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

// One directory being emptied: its stream, its name in the parent frame,
// and whether this pass over it removed anything (then it is read again:
// readdir may miss entries renamed into it meanwhile).
struct Frame {
  DIR* dir = nullptr;
  std::string name;
  bool removed_some = false;
};

std::string Display(const std::string& top, const std::vector<Frame>& stack, const std::string& leaf) {
  std::string out = top;
  for (size_t i = 1; i < stack.size(); ++i) out += "/" + stack[i].name;
  if (!leaf.empty()) out += "/" + leaf;
  return out;
}

// Removes the directory `name` in `parent` (already checked: a directory on
// device `dev`, not a mount root) and everything below it, iteratively.
Status RemoveDirTree(int parent, const std::string& name, const std::string& display, dev_t dev) {
  std::vector<Frame> stack;
  auto close_all = [&] {
    for (auto& f : stack) ::closedir(f.dir);
    stack.clear();
  };
  auto push = [&](int at, const std::string& child) -> Status {
    int fd = ::openat(at, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Error::Sys(errno, "open " + Display(display, stack, child));
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      int err = errno;
      ::close(fd);
      return Error::Sys(err, "opendir " + Display(display, stack, child));
    }
    stack.push_back(Frame{d, child, false});
    return Ok();
  };
  CASK_TRY(push(parent, name));
  uint64_t hoisted = 0;
  while (!stack.empty()) {
    Frame& top = stack.back();
    int top_fd = ::dirfd(top.dir);
    errno = 0;
    struct dirent* e = ::readdir(top.dir);
    if (e == nullptr) {
      if (errno != 0) {
        Status err = Error::Sys(errno, "readdir " + Display(display, stack, ""));
        close_all();
        return err;
      }
      if (top.removed_some) {  // another pass: catch what the stream missed
        top.removed_some = false;
        ::rewinddir(top.dir);
        continue;
      }
      std::string dname = top.name;
      ::closedir(top.dir);
      stack.pop_back();
      int at = stack.empty() ? parent : ::dirfd(stack.back().dir);
      if (::unlinkat(at, dname.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        Status err = Error::Sys(errno, "rmdir " + Display(display, stack, stack.empty() ? "" : dname));
        close_all();
        return err;
      }
      if (!stack.empty()) stack.back().removed_some = true;
      continue;
    }
    std::string child = e->d_name;
    if (child == "." || child == "..") continue;
    struct stat st;
    if (::fstatat(top_fd, child.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      Status err = Error::Sys(errno, "stat " + Display(display, stack, child));
      close_all();
      return err;
    }
    top.removed_some = true;
    if (!S_ISDIR(st.st_mode)) {
      if (::unlinkat(top_fd, child.c_str(), 0) != 0 && errno != ENOENT) {
        Status err = Error::Sys(errno, "unlink " + Display(display, stack, child));
        close_all();
        return err;
      }
      continue;
    }
    if (st.st_dev != dev || IsMountRoot(top_fd, child)) {
      Status err = Error::FailedPrecondition("refusing to remove mount point " + Display(display, stack, child));
      close_all();
      return err;
    }
    if (stack.size() < kRemoveMaxOpenDirs) {
      auto pushed = push(top_fd, child);
      if (!pushed.ok()) {
        close_all();
        return pushed;
      }
      continue;
    }
    // Too deep to keep descending: move this subtree up into the top of the
    // removal (same directory tree, same mount, so rename(2) can) and let
    // the top's next pass remove it from there.
    int root_fd = ::dirfd(stack.front().dir);
    for (;;) {
      std::string hoist = ".cask-rm-" + std::to_string(hoisted++);
      if (::renameat2(top_fd, child.c_str(), root_fd, hoist.c_str(), RENAME_NOREPLACE) == 0) break;
      if (errno == EEXIST) continue;
      Status err = Error::Sys(errno, "move " + Display(display, stack, child) + " up for removal");
      close_all();
      return err;
    }
    stack.front().removed_some = true;
  }
  return Ok();
}

// Removes `name` in `parent` whatever it is (a symlink is unlinked).
Status RemoveEntry(int parent, const std::string& name, const std::string& display, std::optional<dev_t> parent_dev) {
  struct stat st;
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok();
    return Error::Sys(errno, "stat " + display);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT) return Error::Sys(errno, "unlink " + display);
    return Ok();
  }
  if ((parent_dev && st.st_dev != *parent_dev) || IsMountRoot(parent, name))
    return Error::FailedPrecondition("refusing to remove mount point " + display);
  return RemoveDirTree(parent, name, display, st.st_dev);
}

// Splits a relative path into components; rejects absolute paths and
// empty, "." or ".." components.
Result<std::vector<std::string>> Components(const std::string& rel) {
  if (rel.empty() || rel.front() == '/') return Error::InvalidArgument("'" + rel + "' is not a relative path");
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    std::string comp = rel.substr(start, end - start);
    if (comp.empty() || comp == "." || comp == "..")
      return Error::InvalidArgument("'" + rel + "' has an empty, '.' or '..' component");
    out.push_back(std::move(comp));
    start = end + 1;
  }
  return out;
}

}  // namespace

Status RemoveAll(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return Error::Sys(errno, "stat " + path);
  }
  std::string parent = Dirname(path);
  CASK_ASSIGN_OR_RETURN(UniqueFd pfd, Open(parent, O_PATH | O_DIRECTORY));
  struct stat pst;
  if (::fstat(pfd.get(), &pst) != 0) return Error::Sys(errno, "stat " + parent);
  return RemoveEntry(pfd.get(), Basename(path), path, pst.st_dev);
}

Result<UniqueFd> OpenBeneath(int root, const std::string& rel, int flags, mode_t mode, bool same_mount) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  if (flags & (O_CREAT | O_TMPFILE)) how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  if (same_mount) how.resolve |= RESOLVE_NO_XDEV;
  const char* p = rel.empty() ? "." : rel.c_str();
  for (;;) {
    long fd = ::syscall(SYS_openat2, root, p, &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: a concurrent rename; retry
    int err = errno;
    // A missing component is NOT_FOUND (callers create or skip it); a
    // symlink, an escape or another mount (ELOOP, EXDEV) stays INTERNAL.
    return Error::Sys(err == ENOENT ? Code::kNotFound : Code::kInternal, err,
                      "open " + rel + " beneath its root (no symlinks, no escape)");
  }
}

Result<UniqueFd> MkdirAllIn(int root, const std::string& rel, mode_t mode, bool same_mount) {
  CASK_ASSIGN_OR_RETURN(UniqueFd cur, OpenBeneath(root, "", O_PATH | O_DIRECTORY, 0, same_mount));
  if (rel.empty()) return cur;
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> comps, Components(rel));
  std::string done;
  for (const std::string& c : comps) {
    done = done.empty() ? c : done + "/" + c;
    if (::mkdirat(cur.get(), c.c_str(), mode) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + done);
    // Opened from the parent's fd: nothing above can have been swapped, and
    // this component must be a real directory (a symlink is ELOOP).
    auto next = OpenBeneath(cur.get(), c, O_PATH | O_DIRECTORY, 0, same_mount);
    if (!next.ok()) return std::move(next).error().Wrap("mkdir -p " + rel + ": " + done);
    cur = std::move(*next);
  }
  return cur;
}

Status RemoveAllIn(int root, const std::string& rel) {
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> comps, Components(rel));
  std::string leaf = comps.back();
  comps.pop_back();
  std::string parent_rel;
  for (const auto& c : comps) parent_rel = parent_rel.empty() ? c : parent_rel + "/" + c;
  auto parent = OpenBeneath(root, parent_rel, O_PATH | O_DIRECTORY);
  if (!parent.ok()) {
    if (parent.error().code() == Code::kNotFound) return Ok();
    return std::move(parent).error().Wrap("remove " + rel);
  }
  struct stat pst;
  if (::fstat(parent->get(), &pst) != 0) return Error::Sys(errno, "stat the parent of " + rel);
  return RemoveEntry(parent->get(), leaf, rel, pst.st_dev);
}

Result<bool> IsMountRootFd(int fd) {
  struct statx stx;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) != 0)
    return Error::Sys(errno, "statx");
  if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
    return Error::Unimplemented("the kernel does not report STATX_ATTR_MOUNT_ROOT");
  return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
}

Result<uint64_t> MountIdOf(int fd) {
  struct statx stx;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0) return Error::Sys(errno, "statx");
  if (!(stx.stx_mask & STATX_MNT_ID)) return Error::Unimplemented("the kernel does not report STATX_MNT_ID");
  return static_cast<uint64_t>(stx.stx_mnt_id);
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
