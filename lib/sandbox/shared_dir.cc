#include "lib/sandbox/shared_dir.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "lib/base/fs.h"
#include "lib/sys/mountinfo.h"

namespace cask::sandbox {

namespace {

// Rejects absolute paths and "." / ".." / empty components.
Status CheckRelative(const std::string& rel) {
  if (rel.empty() || rel.front() == '/') return Error::InvalidArgument("'" + rel + "' is not a relative path");
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    std::string_view comp(rel.data() + start, end - start);
    if (comp.empty() || comp == "." || comp == "..")
      return Error::InvalidArgument("'" + rel + "' has an empty, '.' or '..' component");
    start = end + 1;
  }
  return Ok();
}

Status UnmountOne(const std::string& target) {
  if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) == 0) return Ok();
  int err = errno;
  if (err == EBUSY) {
    if (::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) return Ok();
    err = errno;
  }
  if (err == EINVAL || err == ENOENT) return Ok();  // already gone (e.g. went with a detached parent)
  return Error::Sys(err, "unmount " + target);
}

}  // namespace

std::vector<std::string> MountPointsUnder(std::string_view mountinfo, const std::string& dir) {
  return sys::MountPointsUnder(sys::ParseMountInfo(mountinfo), dir);
}

Result<std::vector<std::string>> LiveMountPointsUnder(const std::string& dir) {
  CASK_ASSIGN_OR_RETURN(auto mounts, sys::ReadMountInfo());
  return sys::MountPointsUnder(mounts, dir);
}

Status UnmountAllUnder(const std::string& dir) {
  // A detached parent takes its children along, so re-read the table after
  // each round; bound the rounds in case something keeps mounting.
  for (int round = 0; round < 16; ++round) {
    CASK_ASSIGN_OR_RETURN(auto mounts, LiveMountPointsUnder(dir));
    if (mounts.empty()) return Ok();
    for (const auto& m : mounts) CASK_TRY(UnmountOne(m));
  }
  CASK_ASSIGN_OR_RETURN(auto left, LiveMountPointsUnder(dir));
  if (left.empty()) return Ok();
  return Error::FailedPrecondition("mounts keep appearing under " + dir + ", e.g. " + left.front());
}

Status RemoveTreeNoMounts(const std::string& path) {
  if (!PathExists(path)) return Ok();
  CASK_ASSIGN_OR_RETURN(auto mounts, LiveMountPointsUnder(path));
  if (!mounts.empty())
    return Error::FailedPrecondition("refusing to remove " + path + ": " + mounts.front() + " is still mounted");
  return RemoveAll(path);
}

Result<std::unique_ptr<SharedDir>> SharedDir::Create(std::string path) {
  if (path.empty() || path.front() != '/') return Error::InvalidArgument("shared dir '" + path + "' is not absolute");
  // Mount points in mountinfo are canonical: canonicalise the parent.
  char buf[PATH_MAX];
  std::string parent = Dirname(path);
  if (::realpath(parent.c_str(), buf) == nullptr) return Error::Sys(errno, "resolve " + parent);
  std::string real = JoinPath(buf, Basename(path));
  if (::mkdir(real.c_str(), 0700) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + real);

  std::unique_ptr<SharedDir> d(new SharedDir(real));
  if (::mount(real.c_str(), real.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Error::Sys(errno, "bind-mount " + real + " onto itself");
  d->mounted_ = true;
  if (::mount(nullptr, real.c_str(), nullptr, MS_PRIVATE, nullptr) != 0)
    return Error::Sys(errno, "make " + real + " a private mount");
  if (::mount(nullptr, real.c_str(), nullptr, MS_SHARED, nullptr) != 0)
    return Error::Sys(errno, "make " + real + " a shared mount");
  return d;
}

SharedDir::~SharedDir() { (void)Teardown(); }

Result<std::string> SharedDir::Resolve(const std::string& rel) const {
  CASK_TRY(CheckRelative(rel));
  return JoinPath(path_, rel);
}

Status SharedDir::Bind(const std::string& host_src, const std::string& rel, bool readonly) {
  if (removed_) return Error::FailedPrecondition("shared dir " + path_ + " was torn down");
  CASK_ASSIGN_OR_RETURN(std::string target, Resolve(rel));
  struct stat st;
  if (::stat(host_src.c_str(), &st) != 0) return Error::Sys(errno, "stat " + host_src);
  if (PathExists(target)) return Error::AlreadyExists(target + " already exists");
  CASK_TRY(MkdirAll(Dirname(target), 0755));
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(target.c_str(), 0755) != 0) return Error::Sys(errno, "mkdir " + target);
  } else {
    int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return Error::Sys(errno, "create " + target);
    ::close(fd);
  }
  if (::mount(host_src.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return Error::Sys(errno, "bind-mount " + host_src + " onto " + target);
  if (readonly &&
      ::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
    int err = errno;
    (void)UnmountAllUnder(target);
    return Error::Sys(err, "remount " + target + " read-only");
  }
  return Ok();
}

Status SharedDir::Remove(const std::string& rel) {
  if (removed_) return Ok();
  CASK_ASSIGN_OR_RETURN(std::string target, Resolve(rel));
  CASK_TRY(UnmountAllUnder(target));
  return RemoveTreeNoMounts(target);
}

Status SharedDir::Teardown() {
  if (removed_) return Ok();
  // Children first, then the self-bind: UnmountAllUnder covers both (the
  // directory itself is the shallowest entry).
  CASK_TRY(UnmountAllUnder(path_));
  mounted_ = false;
  CASK_TRY(RemoveTreeNoMounts(path_));
  removed_ = true;
  return Ok();
}

}  // namespace cask::sandbox
