#include "lib/sandbox/shared_dir.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "lib/base/fs.h"
#include "lib/sys/mountinfo.h"

namespace cask::sandbox {

namespace {

size_t Depth(const std::string& p) { return static_cast<size_t>(std::count(p.begin(), p.end(), '/')); }

struct MountEntry {
  uint64_t id;        // field 1 of mountinfo
  std::string point;  // the mount point, unescaped
};

// Mounts at or below `dir`, deepest first, the upper of a stack first (the
// order of sys::MountPointsUnder), with their ids.
std::vector<MountEntry> MountsUnder(std::string_view mountinfo, const std::string& dir) {
  std::vector<MountEntry> out;
  for (auto& m : sys::ParseMountInfo(mountinfo))
    if (sys::PathIsAtOrBelow(m.mount_point, dir))
      out.push_back(MountEntry{static_cast<uint64_t>(m.id), std::move(m.mount_point)});
  std::stable_sort(out.begin(), out.end(),
                   [](const MountEntry& a, const MountEntry& b) { return Depth(a.point) > Depth(b.point); });
  size_t i = 0;
  while (i < out.size()) {
    size_t j = i;
    while (j < out.size() && Depth(out[j].point) == Depth(out[i].point)) ++j;
    std::reverse(out.begin() + static_cast<long>(i), out.begin() + static_cast<long>(j));
    i = j;
  }
  return out;
}

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

}  // namespace

std::vector<std::string> MountPointsUnder(std::string_view mountinfo, const std::string& dir) {
  return sys::MountPointsUnder(sys::ParseMountInfo(mountinfo), dir);
}

Result<std::vector<std::string>> LiveMountPointsUnder(const std::string& dir) {
  CASK_ASSIGN_OR_RETURN(auto mounts, sys::ReadMountInfo());
  return sys::MountPointsUnder(mounts, dir);
}

namespace {

// The canonical form of a trusted host path (mountinfo lists canonical
// mount points).
Result<std::string> Canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return Error::Sys(errno, "resolve " + path);
  return std::string(buf);
}

// Detaches every mount at or below <dir>/<rel> (`dir` canonical), opening
// each mount point beneath `dir` as described for UnmountAllUnder.
Status DetachAllBeneath(const std::string& dir, const std::string& rel) {
  const std::string top = rel.empty() ? dir : JoinPath(dir, rel);
  // A detached parent takes its children along, so re-read the table after
  // each detach; bound the rounds in case something keeps mounting.
  constexpr int kMaxRounds = 256;
  std::string last_problem;
  for (int round = 0; round < kMaxRounds; ++round) {
    CASK_ASSIGN_OR_RETURN(std::string info, ReadFile("/proc/self/mountinfo"));
    auto mounts = MountsUnder(info, top);
    if (mounts.empty()) return Ok();
    // Re-opened each round: `dir` itself may have been a mount just detached.
    CASK_ASSIGN_OR_RETURN(UniqueFd dir_fd, Open(dir, O_PATH | O_DIRECTORY));
    bool detached = false;
    // Shallowest first (MountsUnder lists the deepest first).
    for (auto it = mounts.rbegin(); it != mounts.rend() && !detached; ++it) {
      std::string below = it->point.size() > dir.size() ? it->point.substr(dir.size() + 1) : "";
      auto fd = OpenBeneath(dir_fd.get(), below, O_PATH);
      if (!fd.ok()) {
        last_problem = it->point + ": " + fd.error().ToString();
        continue;
      }
      auto id = MountIdOf(fd->get());
      if (!id.ok()) return std::move(id).error().Wrap("mount id of " + it->point);
      if (*id != it->id) {
        // Something else is on top at that path now (a stacked mount, or a
        // path a guest changed): take another entry this round.
        last_problem = it->point + ": the path now leads to mount " + std::to_string(*id) + ", not " +
                       std::to_string(it->id);
        continue;
      }
      std::string proc = "/proc/self/fd/" + std::to_string(fd->get());
      if (::umount2(proc.c_str(), MNT_DETACH) != 0) {
        if (errno == EINVAL || errno == ENOENT) {  // already gone with a parent
          detached = true;
          continue;
        }
        return Error::Sys(errno, "unmount " + it->point);
      }
      detached = true;
    }
    if (!detached)
      return Error::FailedPrecondition("cannot safely unmount what is left under " + top + ": " + last_problem);
  }
  return Error::FailedPrecondition("mounts keep appearing under " + top);
}

// mount(2) on a trusted path, with errors naming the step.
Status MountPath(const char* src, const std::string& target, unsigned long flags, const std::string& what) {
  if (::mount(src, target.c_str(), nullptr, flags, nullptr) != 0) return Error::Sys(errno, what + " " + target);
  return Ok();
}

}  // namespace

Status UnmountAllUnder(const std::string& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return Ok();
    return Error::Sys(errno, "stat " + dir);
  }
  CASK_ASSIGN_OR_RETURN(std::string real, Canonical(dir));
  return DetachAllBeneath(real, "");
}

Status RemoveTreeNoMounts(const std::string& path) {
  if (!PathExists(path)) return Ok();
  CASK_ASSIGN_OR_RETURN(auto mounts, LiveMountPointsUnder(path));
  if (!mounts.empty())
    return Error::FailedPrecondition("refusing to remove " + path + ": " + mounts.front() + " is still mounted");
  return RemoveAll(path);
}

Status CheckShareRelative(const std::string& rel) { return CheckRelative(rel); }

Result<std::unique_ptr<SharedDir>> SharedDir::AtCanonicalPaths(const std::string& host_dir,
                                                                const std::string& export_dir) {
  for (const auto* p : {&host_dir, &export_dir})
    if (p->empty() || p->front() != '/') return Error::InvalidArgument("shared dir '" + *p + "' is not absolute");
  // Mount points in mountinfo are canonical: canonicalise the parents.
  CASK_ASSIGN_OR_RETURN(std::string host_parent, Canonical(Dirname(host_dir)));
  CASK_ASSIGN_OR_RETURN(std::string export_parent, Canonical(Dirname(export_dir)));
  return std::unique_ptr<SharedDir>(
      new SharedDir(JoinPath(host_parent, Basename(host_dir)), JoinPath(export_parent, Basename(export_dir))));
}

Result<std::unique_ptr<SharedDir>> SharedDir::Create(std::string host_dir, std::string export_dir) {
  CASK_ASSIGN_OR_RETURN(std::unique_ptr<SharedDir> d, AtCanonicalPaths(host_dir, export_dir));
  const std::string& host = d->host_path_;
  const std::string& exp = d->export_path_;

  if (::mkdir(host.c_str(), 0700) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + host);
  d->host_created_ = true;
  CASK_TRY(MountPath(host.c_str(), host, MS_BIND, "bind-mount onto itself"));
  CASK_TRY(MountPath(nullptr, host, MS_PRIVATE, "make private"));
  CASK_TRY(MountPath(nullptr, host, MS_SHARED, "make shared"));
  CASK_ASSIGN_OR_RETURN(d->root_, Open(host, O_PATH | O_DIRECTORY));
  // The fd must be the self-bind itself (its root), or the binds made
  // beneath it would not propagate.
  CASK_ASSIGN_OR_RETURN(bool is_root, IsMountRootFd(d->root_.get()));
  if (!is_root) return Error::Internal(host + " is not a mount root after the self-bind");

  if (::mkdir(exp.c_str(), 0755) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + exp);
  d->export_created_ = true;
  // A bind of a shared mount joins its peer group; MS_SLAVE then makes it
  // receive from mounts/ without ever sending back.
  CASK_TRY(MountPath(host.c_str(), exp, MS_BIND, "bind " + host + " to"));
  CASK_TRY(MountPath(nullptr, exp, MS_SLAVE, "make slave"));
  CASK_TRY(MountPath(nullptr, exp, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                     "remount read-only, nosuid, nodev"));
  return d;
}

SharedDir::~SharedDir() { (void)Teardown(); }

Result<std::unique_ptr<SharedDir>> SharedDir::Adopt(std::string host_dir, std::string export_dir) {
  CASK_ASSIGN_OR_RETURN(std::unique_ptr<SharedDir> d, AtCanonicalPaths(host_dir, export_dir));
  CASK_ASSIGN_OR_RETURN(auto mounts, sys::ReadMountInfo());
  auto host_mounts = sys::MountPointsUnder(mounts, d->host_path_);
  auto export_mounts = sys::MountPointsUnder(mounts, d->export_path_);
  if (host_mounts.size() != 1 || host_mounts[0] != d->host_path_ || export_mounts.size() != 1 ||
      export_mounts[0] != d->export_path_)
    return Error::FailedPrecondition("shared dir " + d->host_path_ + " is not a fresh export (" +
                                     std::to_string(host_mounts.size()) + " and " +
                                     std::to_string(export_mounts.size()) + " mounts)");
  // Owned from here: a failure below tears both down.
  d->host_created_ = d->export_created_ = true;
  CASK_ASSIGN_OR_RETURN(d->root_, Open(d->host_path_, O_PATH | O_DIRECTORY));
  CASK_ASSIGN_OR_RETURN(bool is_root, IsMountRootFd(d->root_.get()));
  if (!is_root) return Error::FailedPrecondition(d->host_path_ + " is not the root of its mount");
  return d;
}

void SharedDir::Release() {
  root_.Reset();
  removed_ = true;
}

namespace {

// The source as a detached mount tree with its attributes set: the clone is
// private (no propagation back to the source's peers), nosuid, nodev and,
// when asked, read-only, all recursively.
Result<UniqueFd> CloneSource(const std::string& host_src, bool readonly) {
  int fd = ::open_tree(AT_FDCWD, host_src.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (fd < 0) return Error::Sys(errno, "open_tree " + host_src);
  UniqueFd tree(fd);
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (readonly ? MOUNT_ATTR_RDONLY : 0);
  attr.propagation = MS_PRIVATE;
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
    return Error::Sys(errno, "set the attributes of the bind of " + host_src);
  return tree;
}

}  // namespace

Status SharedDir::Bind(const std::string& host_src, const std::string& rel, bool readonly) {
  if (removed_ || !root_) return Error::FailedPrecondition("shared dir " + host_path_ + " was torn down");
  CASK_TRY(CheckRelative(rel));
  CASK_ASSIGN_OR_RETURN(UniqueFd tree, CloneSource(host_src, readonly));
  struct stat st;
  if (::fstat(tree.get(), &st) != 0) return Error::Sys(errno, "stat " + host_src);
  const bool is_dir = S_ISDIR(st.st_mode);

  const std::string parent_rel = rel.find('/') == std::string::npos ? "" : Dirname(rel);
  const std::string leaf = Basename(rel);
  CASK_ASSIGN_OR_RETURN(UniqueFd parent, MkdirAllIn(root_.get(), parent_rel, 0755, /*same_mount=*/true)
                                             .Context("create the parents of " + rel));
  if (is_dir) {
    if (::mkdirat(parent.get(), leaf.c_str(), 0755) != 0)
      return Error::Sys(errno == EEXIST ? Code::kAlreadyExists : Code::kInternal, errno, "mkdir " + rel);
  } else {
    int fd = ::openat(parent.get(), leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return Error::Sys(errno == EEXIST ? Code::kAlreadyExists : Code::kInternal, errno, "create " + rel);
    ::close(fd);
  }
  auto undo_leaf = [&] { ::unlinkat(parent.get(), leaf.c_str(), is_dir ? AT_REMOVEDIR : 0); };
  auto target = OpenBeneath(parent.get(), leaf, O_PATH | (is_dir ? O_DIRECTORY : 0), 0, /*same_mount=*/true);
  if (!target.ok()) {
    undo_leaf();
    return std::move(target).error().Wrap("open the mount point " + rel);
  }
  if (::move_mount(tree.get(), "", target->get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    int err = errno;
    undo_leaf();
    return Error::Sys(err, "bind-mount " + host_src + " onto " + rel);
  }
  return Ok();
}

Result<bool> SharedDir::Exists(const std::string& rel) const {
  if (!root_) return false;
  CASK_TRY(CheckRelative(rel));
  auto fd = OpenBeneath(root_.get(), rel, O_PATH);
  if (fd.ok()) return true;
  if (fd.error().code() == Code::kNotFound) return false;
  return std::move(fd).error();
}

Status SharedDir::Remove(const std::string& rel) {
  if (removed_ || !root_) return Ok();
  CASK_TRY(CheckRelative(rel));
  CASK_TRY(DetachAllBeneath(host_path_, rel));
  CASK_ASSIGN_OR_RETURN(auto left, LiveMountPointsUnder(JoinPath(host_path_, rel)));
  if (!left.empty()) return Error::FailedPrecondition("refusing to remove " + rel + ": " + left.front() + " is mounted");
  return RemoveAllIn(root_.get(), rel);
}

Status SharedDir::Teardown() {
  if (removed_) return Ok();
  std::optional<Error> first;
  auto note = [&](Status st) {
    if (!st.ok() && !first) first = std::move(st).error();
  };
  // The export first (it only mirrors mounts/), then mounts/ with its
  // self-bind: detaching that takes every bind below along.
  if (export_created_) note(UnmountAllUnder(export_path_));
  root_.Reset();
  if (host_created_) note(UnmountAllUnder(host_path_));
  if (first) return std::move(*first);
  if (export_created_) {
    CASK_TRY(RemoveTreeNoMounts(export_path_));
    export_created_ = false;
  }
  if (host_created_) {
    CASK_TRY(RemoveTreeNoMounts(host_path_));
    host_created_ = false;
  }
  removed_ = true;
  return Ok();
}

}  // namespace cask::sandbox
