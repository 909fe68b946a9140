#include "lib/container/mounts.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <sstream>

#include "lib/base/fs.h"
#include "lib/base/unique_fd.h"
#include "lib/sys/mountinfo.h"

namespace cask::container {
namespace {

constexpr std::string_view kDefaultDevices[] = {"null", "zero", "full", "random", "urandom", "tty"};

Error MountError(int err, const std::string& what) { return Error::Sys(err, what); }

// openat2(root, path, flags, RESOLVE_IN_ROOT): `path` is resolved as if
// `root` were "/", whatever symlinks it crosses.
Result<UniqueFd> OpenInRoot(int root, const std::string& path, uint64_t flags, mode_t mode = 0) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string rel = path;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  if (rel.empty()) rel = ".";
  for (;;) {
    long fd = syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno == EINTR || errno == EAGAIN) continue;
    return Error::Sys(errno, "open " + path + " in the rootfs");
  }
}

std::vector<std::string> Components(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(path);
  for (std::string c; std::getline(in, c, '/');) {
    if (!c.empty() && c != ".") out.push_back(c);
  }
  return out;
}

// Resolves the symlinks of `path` inside the rootfs, component by
// component (absolute links restart at the rootfs, ".." stops at it),
// without needing the tail to exist: "/etc/resolv.conf" ->
// "/run/systemd/resolve/stub-resolv.conf" even when that file is missing,
// so a mount point can be created where the image's link points.
Result<std::string> ResolveInRoot(int root, const std::string& path) {
  std::vector<std::string> todo = Components(path);
  std::reverse(todo.begin(), todo.end());  // a stack: next component last
  std::vector<std::string> done;
  int links = 0;
  bool parent_missing = false;
  auto join = [](const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& p : parts) out += "/" + p;
    return out.empty() ? std::string("/") : out;
  };
  while (!todo.empty()) {
    std::string c = todo.back();
    todo.pop_back();
    if (c == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    if (!parent_missing) {
      auto dir = OpenInRoot(root, join(done), O_PATH | O_DIRECTORY);
      if (!dir.ok()) {
        parent_missing = true;  // nothing below can be a link
      } else {
        char buf[4096];
        ssize_t n = readlinkat(dir->get(), c.c_str(), buf, sizeof buf - 1);
        if (n >= 0) {
          if (++links > 40) return Error::Sys(ELOOP, "resolve " + path + " in the rootfs");
          std::string target(buf, static_cast<size_t>(n));
          if (!target.empty() && target[0] == '/') done.clear();
          std::vector<std::string> parts = Components(target);
          for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo.push_back(*it);
          continue;
        }
      }
    }
    done.push_back(c);
  }
  return join(done);
}

// mkdir -p of `path` inside the rootfs; returns an O_PATH fd of the directory.
Result<UniqueFd> MkdirAllIn(int root, const std::string& path) {
  std::string prefix;
  UniqueFd dir;
  CASK_ASSIGN_OR_RETURN(dir, OpenInRoot(root, "/", O_PATH | O_DIRECTORY));
  for (const auto& c : Components(path)) {
    prefix += "/" + c;
    auto next = OpenInRoot(root, prefix, O_PATH | O_DIRECTORY);
    if (!next.ok() && next.error().sys_errno() == ENOENT) {
      if (mkdirat(dir.get(), c.c_str(), 0755) != 0 && errno != EEXIST) {
        return Error::Sys(errno, "mkdir " + prefix + " in the rootfs");
      }
      next = OpenInRoot(root, prefix, O_PATH | O_DIRECTORY);
    }
    if (!next.ok()) return std::move(next).error();
    dir = std::move(next).value();
  }
  return dir;
}

// Makes sure a mount point exists: a directory, or an empty file when the
// source of a bind mount is not a directory.
Status MakeMountPoint(int root, const std::string& dest, bool dir) {
  if (dir) {
    auto made = MkdirAllIn(root, dest);
    if (!made.ok()) return std::move(made).error();
    return Ok();
  }
  CASK_TRY(MkdirAllIn(root, Dirname(dest)));
  auto existing = OpenInRoot(root, dest, O_PATH);
  if (existing.ok()) return Ok();
  auto created = OpenInRoot(root, dest, O_CREAT | O_WRONLY, 0644);
  if (!created.ok()) return std::move(created).error();
  return Ok();
}

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Remount flags that are locked on an existing mount (inside a user
// namespace they cannot be cleared), from statvfs.
unsigned long LockedFlags(const std::string& path) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) return 0;
  unsigned long f = 0;
  if (st.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (st.f_flag & ST_NODEV) f |= MS_NODEV;
  if (st.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (st.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (st.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (st.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

// MS_REMOUNT|MS_BIND with `flags`; retries with the locked flags on EPERM.
// With `keep`, the mount's current flags are kept (only adding `flags`).
Status BindRemount(const std::string& target, unsigned long flags, const std::string& what,
                   bool keep = false) {
  flags |= MS_REMOUNT | MS_BIND;
  if (keep) flags |= LockedFlags(target);
  if (mount(nullptr, target.c_str(), nullptr, flags, nullptr) == 0) return Ok();
  int err = errno;
  if (err == EPERM &&
      mount(nullptr, target.c_str(), nullptr, flags | LockedFlags(target), nullptr) == 0) {
    return Ok();
  }
  return MountError(err, "remount " + what);
}

constexpr unsigned long kRemountable =
    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME |
    MS_STRICTATIME | MS_SYNCHRONOUS | MS_DIRSYNC | MS_MANDLOCK | MS_LAZYTIME;

Status DoMount(int root, const PlannedMount& pm, const RootfsPlan& plan) {
  const oci::Mount& m = pm.mount;
  const MountOptions& o = pm.opts;
  // Mount on where the destination's symlinks lead, inside the rootfs.
  CASK_ASSIGN_OR_RETURN(const std::string dest, ResolveInRoot(root, m.destination));
  bool is_cgroup = m.type == "cgroup" || m.type == "cgroup2";
  bool bind = o.bind() || (is_cgroup && !plan.cgroup_ns && !plan.cgroup_path.empty());
  std::string source = m.source;
  unsigned long bind_flags = MS_BIND | (o.flags & MS_REC);
  if (is_cgroup && bind && !o.bind()) {
    // Without a cgroup namespace a cgroup2 mount would show the whole
    // hierarchy: show the container's own cgroup instead, as runc does.
    source = plan.cgroup_path;
    bind_flags = MS_BIND | MS_REC;
  }

  bool dir = true;
  if (bind) {
    struct stat st {};
    if (stat(source.c_str(), &st) != 0) {
      return Error::Sys(errno, "bind mount source " + source + " for " + dest);
    }
    dir = S_ISDIR(st.st_mode);
  }
  CASK_TRY(MakeMountPoint(root, dest, dir).Context("mount point " + dest));
  CASK_ASSIGN_OR_RETURN(UniqueFd target, OpenInRoot(root, dest, O_PATH));

  if (bind) {
    if (mount(source.c_str(), FdPath(target.get()).c_str(), nullptr, bind_flags, nullptr) != 0) {
      return MountError(errno, "bind mount " + source + " on " + dest);
    }
    unsigned long extra = o.flags & kRemountable;
    if (extra != 0) {
      // The fd still names the directory under the new mount: reopen.
      CASK_ASSIGN_OR_RETURN(UniqueFd mounted, OpenInRoot(root, dest, O_PATH));
      CASK_TRY(BindRemount(FdPath(mounted.get()), extra, dest));
    }
  } else {
    std::string type = m.type == "cgroup" ? "cgroup2" : m.type;
    if (type.empty()) return Error::InvalidArgument("mount " + dest + " has no type");
    if (source.empty()) source = type;
    unsigned long flags = o.flags & ~(MS_BIND | MS_REC | MS_REMOUNT);
    if (mount(source.c_str(), FdPath(target.get()).c_str(), type.c_str(), flags,
              o.data.empty() ? nullptr : o.data.c_str()) != 0) {
      int err = errno;
      if (err == EPERM && type == "sysfs") {
        // A user namespace without its own network namespace may not mount
        // sysfs; bind the guest's instead, as runc does.
        PlannedMount bind = pm;
        bind.mount.type = "bind";
        bind.mount.source = "/sys";
        bind.opts.flags |= MS_BIND | MS_REC;
        return DoMount(root, bind, plan);
      }
      return MountError(err, "mount " + type + " on " + dest);
    }
  }
  if (!o.propagation.empty() || o.attr_set != 0 || o.attr_clr != 0) {
    CASK_ASSIGN_OR_RETURN(UniqueFd mounted, OpenInRoot(root, dest, O_PATH));
    for (unsigned long p : o.propagation) {
      if (mount(nullptr, FdPath(mounted.get()).c_str(), nullptr, p, nullptr) != 0) {
        return MountError(errno, "set propagation of " + dest);
      }
    }
    if (o.attr_set != 0 || o.attr_clr != 0) {
      mount_attr attr{};
      attr.attr_set = o.attr_set;
      attr.attr_clr = o.attr_clr;
      if (syscall(SYS_mount_setattr, mounted.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                  sizeof attr) != 0) {
        return MountError(errno, "set recursive attributes of " + dest);
      }
    }
  }
  return Ok();
}

Status BindFromHost(int root, const std::string& host_path, const std::string& dest) {
  CASK_TRY(MakeMountPoint(root, dest, false));
  CASK_ASSIGN_OR_RETURN(UniqueFd target, OpenInRoot(root, dest, O_PATH));
  if (mount(host_path.c_str(), FdPath(target.get()).c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return MountError(errno, "bind mount " + host_path + " on " + dest);
  }
  return Ok();
}

Status CreateDevice(int root, const oci::Device& d) {
  mode_t type = 0;
  if (d.type == "c" || d.type == "u") type = S_IFCHR;
  else if (d.type == "b") type = S_IFBLK;
  else if (d.type == "p") type = S_IFIFO;
  else return Error::InvalidArgument("device " + d.path + " has bad type \"" + d.type + "\"");
  CASK_ASSIGN_OR_RETURN(UniqueFd dir, MkdirAllIn(root, Dirname(d.path)));
  std::string name = Basename(d.path);
  unlinkat(dir.get(), name.c_str(), 0);  // replace what the image has there
  mode_t mode = (d.file_mode.value_or(0666) & 07777) | type;
  dev_t dev = makedev(static_cast<unsigned>(d.major), static_cast<unsigned>(d.minor));
  if (mknodat(dir.get(), name.c_str(), mode, dev) != 0) {
    int err = errno;
    // In a user namespace mknod is denied: bind the guest's node instead.
    if (err == EPERM && type != S_IFIFO && PathExists(d.path)) {
      return BindFromHost(root, d.path, d.path);
    }
    return Error::Sys(err, "mknod " + d.path);
  }
  if (d.uid || d.gid) {
    if (fchownat(dir.get(), name.c_str(), d.uid.value_or(0), d.gid.value_or(0),
                 AT_SYMLINK_NOFOLLOW) != 0) {
      return Error::Sys(errno, "chown " + d.path);
    }
  }
  return Ok();
}

Status Symlink(int devdir, const char* target, const char* name, bool replace) {
  if (replace) unlinkat(devdir, name, 0);
  if (symlinkat(target, devdir, name) != 0 && errno != EEXIST) {
    return Error::Sys(errno, std::string("symlink /dev/") + name + " -> " + target);
  }
  return Ok();
}

Status SetupDev(int root, const RootfsPlan& plan) {
  for (auto name : kDefaultDevices) {
    std::string path = "/dev/" + std::string(name);
    bool in_spec = std::any_of(plan.devices.begin(), plan.devices.end(),
                               [&](const oci::Device& d) { return d.path == path; });
    if (!in_spec) CASK_TRY(BindFromHost(root, path, path));
  }
  CASK_ASSIGN_OR_RETURN(UniqueFd dev, OpenInRoot(root, "/dev", O_DIRECTORY | O_RDONLY));
  CASK_TRY(Symlink(dev.get(), "/proc/self/fd", "fd", false));
  CASK_TRY(Symlink(dev.get(), "/proc/self/fd/0", "stdin", false));
  CASK_TRY(Symlink(dev.get(), "/proc/self/fd/1", "stdout", false));
  CASK_TRY(Symlink(dev.get(), "/proc/self/fd/2", "stderr", false));
  CASK_TRY(Symlink(dev.get(), "pts/ptmx", "ptmx", true));
  return Ok();
}

// The MS_MOVE + chroot fallback for roots that cannot be pivoted (initramfs).
// First detaches every mount that is neither the rootfs, under it, nor one
// of its ancestors, so the old tree is not reachable or listed.
Status MoveRoot(const std::string& rootfs) {
  auto info = sys::ReadMountInfo();
  if (info.ok()) {
    std::vector<std::string> points;
    for (const auto& m : *info) {
      const std::string& point = m.mount_point;
      if (point == "/" || sys::PathIsAtOrBelow(point, rootfs) || sys::PathIsAtOrBelow(rootfs, point)) continue;
      points.push_back(point);
    }
    std::sort(points.begin(), points.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const auto& p : points) umount2(p.c_str(), MNT_DETACH);  // best effort
  }
  if (chdir(rootfs.c_str()) != 0) return Error::Sys(errno, "chdir " + rootfs);
  if (mount(rootfs.c_str(), "/", nullptr, MS_MOVE, nullptr) != 0) {
    return Error::Sys(errno, "move rootfs " + rootfs + " to /");
  }
  if (chroot(".") != 0) return Error::Sys(errno, "chroot to the rootfs");
  if (chdir("/") != 0) return Error::Sys(errno, "chdir /");
  return Ok();
}

}  // namespace

Status SetRecursiveReadOnly(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) return Error::Sys(errno, "open " + path);
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (syscall(SYS_mount_setattr, fd.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    return Error::Sys(errno, "make " + path + " read-only recursively (mount_setattr)");
  }
  return Ok();
}

Result<RootfsPlan> PlanRootfs(const oci::Spec& spec, const std::string& rootfs) {
  RootfsPlan plan;
  if (rootfs.empty() || rootfs[0] != '/') {
    return Error::InvalidArgument("rootfs \"" + rootfs + "\" is not an absolute path");
  }
  plan.rootfs = rootfs;
  while (plan.rootfs.size() > 1 && plan.rootfs.back() == '/') plan.rootfs.pop_back();
  struct stat st {};
  if (stat(plan.rootfs.c_str(), &st) != 0)
    return Error::Sys(errno == ENOENT ? Code::kNotFound : Code::kInternal, errno, "rootfs " + rootfs);
  if (!S_ISDIR(st.st_mode)) return Error::InvalidArgument("rootfs " + rootfs + " is not a directory");

  const oci::Linux* lx = spec.linux ? &*spec.linux : nullptr;
  std::string prop = lx ? lx->rootfs_propagation : "";
  CASK_ASSIGN_OR_RETURN(unsigned long p, ParsePropagation(prop));
  bool is_private = p & MS_PRIVATE;
  plan.root_propagation = MS_REC | (is_private ? MS_PRIVATE : MS_SLAVE);
  if (p & (MS_SHARED | MS_UNBINDABLE)) plan.final_propagation = p;

  for (const auto& m : spec.mounts) {
    if (m.destination.empty() || m.destination[0] != '/') {
      return Error::InvalidArgument("mount destination \"" + m.destination +
                                    "\" is not an absolute path");
    }
    if (m.destination == "/") return Error::InvalidArgument("a mount on / is not supported");
    PlannedMount pm;
    pm.mount = m;
    CASK_ASSIGN_OR_RETURN(pm.opts, ParseMountOptions(m.options).Context("mount " + m.destination));
    if (m.type == "bind") pm.opts.flags |= MS_BIND;
    // A read-only bind is read-only all the way down: a remount only
    // changes the top mount, and the sub-mounts an rbind copies (or that
    // appear below the source later) would stay writable. An explicit
    // "rrw" keeps them writable.
    if (pm.opts.bind() && (pm.opts.flags & MS_RDONLY) && !(pm.opts.attr_clr & MOUNT_ATTR_RDONLY)) {
      pm.opts.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if (pm.opts.bind() && (m.source.empty() || m.source[0] != '/')) {
      return Error::InvalidArgument("bind mount source \"" + m.source + "\" for " +
                                    m.destination + " is not an absolute guest path");
    }
    if (m.destination == "/dev" && !pm.opts.bind() && (m.type == "tmpfs" || m.type == "devtmpfs")) {
      plan.dev_tmpfs = true;
    }
    plan.mounts.push_back(std::move(pm));
  }
  if (lx) {
    for (const auto& d : lx->devices) {
      if (d.path.empty() || d.path[0] != '/') {
        return Error::InvalidArgument("device path \"" + d.path + "\" is not absolute");
      }
      if (d.type != "c" && d.type != "u" && d.type != "b" && d.type != "p") {
        return Error::InvalidArgument("device " + d.path + " has bad type \"" + d.type + "\"");
      }
    }
    plan.devices = lx->devices;
    plan.masked_paths = lx->masked_paths;
    plan.readonly_paths = lx->readonly_paths;
    for (const auto& ns : lx->namespaces) plan.cgroup_ns |= ns.type == "cgroup";
  }
  plan.readonly_root = spec.root && spec.root->readonly;
  return plan;
}

Status SetupRootfs(const RootfsPlan& plan) {
  if (mount(nullptr, "/", nullptr, plan.root_propagation, nullptr) != 0) {
    return Error::Sys(errno, "set propagation of /");
  }
  if (mount(plan.rootfs.c_str(), plan.rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return Error::Sys(errno, "bind mount rootfs " + plan.rootfs + " onto itself");
  }
  UniqueFd root(open(plan.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return Error::Sys(errno, "open rootfs " + plan.rootfs);
  for (const auto& pm : plan.mounts) CASK_TRY(DoMount(root.get(), pm, plan));
  for (const auto& d : plan.devices) CASK_TRY(CreateDevice(root.get(), d));
  if (plan.dev_tmpfs) CASK_TRY(SetupDev(root.get(), plan));
  return Ok();
}

Status EnterRootfs(const RootfsPlan& plan) {
  UniqueFd newroot(open(plan.rootfs.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!newroot) return Error::Sys(errno, "open rootfs " + plan.rootfs);
  if (fchdir(newroot.get()) != 0) return Error::Sys(errno, "chdir to rootfs");
  if (plan.no_pivot) {
    CASK_TRY(MoveRoot(plan.rootfs));
  } else if (syscall(SYS_pivot_root, ".", ".") == 0) {
    // The old root is now stacked on "."; detach it without propagating.
    if (mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) {
      return Error::Sys(errno, "make the old root a slave");
    }
    if (umount2(".", MNT_DETACH) != 0) return Error::Sys(errno, "detach the old root");
    if (chdir("/") != 0) return Error::Sys(errno, "chdir /");
  } else if (errno == EINVAL) {
    CASK_TRY(MoveRoot(plan.rootfs).Context("pivot_root unsupported here (initramfs root?)"));
  } else {
    return Error::Sys(errno, "pivot_root to " + plan.rootfs);
  }
  if (plan.final_propagation != 0 &&
      mount(nullptr, "/", nullptr, plan.final_propagation, nullptr) != 0) {
    return Error::Sys(errno, "set rootfs propagation");
  }
  return Ok();
}

Status RestrictPaths(const RootfsPlan& plan) {
  for (const auto& p : plan.readonly_paths) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return Error::Sys(errno, "read-only path " + p);
    }
    if (mount(p.c_str(), p.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return Error::Sys(errno, "bind read-only path " + p);
    }
    CASK_TRY(BindRemount(p, MS_RDONLY | MS_REC, "read-only path " + p, /*keep=*/true));
    CASK_TRY(SetRecursiveReadOnly(p).Context("read-only path " + p));
  }
  for (const auto& p : plan.masked_paths) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return Error::Sys(errno, "masked path " + p);
    }
    int rc = S_ISDIR(st.st_mode)
                 ? mount("tmpfs", p.c_str(), "tmpfs", MS_RDONLY, nullptr)
                 : mount("/dev/null", p.c_str(), nullptr, MS_BIND, nullptr);
    if (rc != 0) return Error::Sys(errno, "mask path " + p);
  }
  return Ok();
}

Status FinishRootfs(const RootfsPlan& plan) {
  if (plan.readonly_root) CASK_TRY(BindRemount("/", MS_RDONLY, "/ read-only", /*keep=*/true));
  return Ok();
}

}  // namespace cask::container
