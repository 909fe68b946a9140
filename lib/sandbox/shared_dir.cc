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

namespace cask::sandbox {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() &&
        std::all_of(s.begin() + static_cast<long>(i) + 1, s.begin() + static_cast<long>(i) + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool IsAtOrBelow(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

size_t Depth(const std::string& p) { return static_cast<size_t>(std::count(p.begin(), p.end(), '/')); }

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
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t eol = mountinfo.find('\n', pos);
    if (eol == std::string_view::npos) eol = mountinfo.size();
    std::string_view line = mountinfo.substr(pos, eol - pos);
    pos = eol + 1;
    // id parent major:minor root mountpoint ...
    size_t field_start = 0;
    std::string_view field;
    bool found = true;
    for (int i = 0; i < 5; ++i) {
      size_t sp = line.find(' ', field_start);
      if (sp == std::string_view::npos) {
        if (i < 4) {
          found = false;
          break;
        }
        sp = line.size();
      }
      field = line.substr(field_start, sp - field_start);
      field_start = sp + 1;
    }
    if (!found) continue;
    std::string mp = Unescape(field);
    if (IsAtOrBelow(mp, dir)) out.push_back(std::move(mp));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const std::string& a, const std::string& b) { return Depth(a) > Depth(b); });
  // Among stacked mounts on the same point the later (upper) one comes
  // first so that unmounting in this order peels the stack top-down.
  size_t i = 0;
  while (i < out.size()) {
    size_t j = i;
    while (j < out.size() && Depth(out[j]) == Depth(out[i])) ++j;
    std::reverse(out.begin() + static_cast<long>(i), out.begin() + static_cast<long>(j));
    i = j;
  }
  return out;
}

Result<std::vector<std::string>> LiveMountPointsUnder(const std::string& dir) {
  CASK_ASSIGN_OR_RETURN(std::string info, ReadFile("/proc/self/mountinfo"));
  return MountPointsUnder(info, dir);
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
