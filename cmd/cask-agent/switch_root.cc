#include "cmd/cask-agent/switch_root.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "lib/base/fs.h"
#include "lib/sys/mountinfo.h"

namespace cask::agent {

bool RootIsInitramfs(const std::string& mountinfo) {
  for (const auto& m : sys::ParseMountInfo(mountinfo)) {
    if (m.mount_point == "/" && m.fstype == "rootfs") return true;
  }
  return false;
}

namespace {

Status CopyFileContents(int src_dir, int dst_dir, const char* name, const struct stat& st) {
  int in = ::openat(src_dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0) return Error::Sys(errno, std::string("open ") + name);
  UniqueFd src(in);
  int out = ::openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
  if (out < 0) return Error::Sys(errno, std::string("create ") + name);
  UniqueFd dst(out);
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(src.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::Sys(errno, std::string("read ") + name);
    }
    if (n == 0) break;
    CASK_TRY_CTX(WriteAll(dst.get(), std::string_view(buf.data(), static_cast<size_t>(n))), name);
  }
  return Ok();
}

void CopyMetadata(int dst_dir, const char* name, const struct stat& st, bool is_link) {
  int flags = is_link ? AT_SYMLINK_NOFOLLOW : 0;
  (void)::fchownat(dst_dir, name, st.st_uid, st.st_gid, flags);
  if (!is_link) (void)::fchmodat(dst_dir, name, st.st_mode & 07777, 0);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  (void)::utimensat(dst_dir, name, times, flags);
}

// The names in directory `dir` (read through a duplicate fd, so `dir` stays
// open), without "." and ".." and without `skip`. `where` names the directory
// in errors.
Result<std::vector<std::string>> EntryNames(int dir, const std::string& skip,
                                            const std::string& where) {
  int dup = ::fcntl(dir, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return Error::Sys(errno, "dup");
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return Error::Sys(errno, "opendir " + where);
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != ".." && n != skip) names.push_back(n);
  }
  ::closedir(d);
  return names;
}

Status CopyDir(int src, int dst, dev_t dev, const std::string& skip, const std::string& where) {
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> names, EntryNames(src, skip, where));
  for (const std::string& n : names) {
    const char* name = n.c_str();
    std::string path = where + "/" + n;
    struct stat st;
    if (::fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return Error::Sys(errno, "stat " + path);
    if (st.st_dev != dev) continue;  // a mount point: not part of the image
    if (S_ISDIR(st.st_mode)) {
      if (::mkdirat(dst, name, 0700) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + path);
      int s = ::openat(src, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
      if (s < 0) return Error::Sys(errno, "open " + path);
      UniqueFd sfd(s);
      int t = ::openat(dst, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
      if (t < 0) return Error::Sys(errno, "open copy of " + path);
      UniqueFd tfd(t);
      CASK_TRY(CopyDir(sfd.get(), tfd.get(), dev, "", path));
      CopyMetadata(dst, name, st, false);
    } else if (S_ISREG(st.st_mode)) {
      CASK_TRY_CTX(CopyFileContents(src, dst, name, st), path);
      CopyMetadata(dst, name, st, false);
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t len = ::readlinkat(src, name, target.data(), target.size());
      if (len < 0) return Error::Sys(errno, "readlink " + path);
      target.resize(static_cast<size_t>(len));
      if (::symlinkat(target.c_str(), dst, name) != 0) return Error::Sys(errno, "symlink " + path);
      CopyMetadata(dst, name, st, true);
    } else {
      if (::mknodat(dst, name, st.st_mode, st.st_rdev) != 0) return Error::Sys(errno, "mknod " + path);
      CopyMetadata(dst, name, st, false);
    }
  }
  return Ok();
}

Status DeleteDir(int dir, dev_t dev, const std::string& skip, const std::string& where) {
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> names, EntryNames(dir, skip, where));
  Status first;
  for (const std::string& n : names) {
    struct stat st;
    if (::fstatat(dir, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != dev) continue;
    if (S_ISDIR(st.st_mode)) {
      int s = ::openat(dir, n.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
      if (s >= 0) {
        UniqueFd sfd(s);
        Status st2 = DeleteDir(sfd.get(), dev, "", where + "/" + n);
        if (!st2.ok() && first.ok()) first = st2;
      }
      if (::unlinkat(dir, n.c_str(), AT_REMOVEDIR) != 0 && first.ok())
        first = Error::Sys(errno, "rmdir " + where + "/" + n);
    } else if (::unlinkat(dir, n.c_str(), 0) != 0 && first.ok()) {
      first = Error::Sys(errno, "unlink " + where + "/" + n);
    }
  }
  return first;
}

}  // namespace

Status CopyTree(const std::string& src_dir, const std::string& dst_dir, const std::string& skip) {
  CASK_ASSIGN_OR_RETURN(UniqueFd src, Open(src_dir, O_RDONLY | O_DIRECTORY));
  CASK_ASSIGN_OR_RETURN(UniqueFd dst, Open(dst_dir, O_RDONLY | O_DIRECTORY));
  struct stat st;
  if (::fstat(src.get(), &st) != 0) return Error::Sys(errno, "stat " + src_dir);
  return CopyDir(src.get(), dst.get(), st.st_dev, skip, src_dir == "/" ? "" : src_dir);
}

Status DeleteTree(const std::string& dir, const std::string& skip) {
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(dir, O_RDONLY | O_DIRECTORY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Error::Sys(errno, "stat " + dir);
  return DeleteDir(fd.get(), st.st_dev, skip, dir == "/" ? "" : dir);
}

Result<bool> SwitchRootFromInitramfs(const std::string& self, char** argv) {
  if (::mkdir("/proc", 0555) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir /proc");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    return Error::Sys(errno, "mount /proc");
  auto mountinfo = ReadFile("/proc/self/mountinfo");
  ::umount2("/proc", MNT_DETACH);
  if (!mountinfo.ok()) return std::move(mountinfo).error();
  if (!RootIsInitramfs(*mountinfo)) return false;

  const std::string kNewRoot = ".cask-root";
  const std::string new_root = "/" + kNewRoot;
  if (::mkdir(new_root.c_str(), 0755) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + new_root);
  if (::mount("tmpfs", new_root.c_str(), "tmpfs", 0, "mode=0755") != 0)
    return Error::Sys(errno, "mount tmpfs on " + new_root);
  Status copied = CopyTree("/", new_root, kNewRoot);
  if (!copied.ok()) {
    // Leave the initramfs as it was; containers fall back to chroot.
    ::umount2(new_root.c_str(), MNT_DETACH);
    ::rmdir(new_root.c_str());
    return std::move(copied).error().Wrap("copy the initramfs to tmpfs");
  }
  // The copies are complete: free the initramfs memory.
  (void)DeleteTree("/", kNewRoot);
  if (::chdir(new_root.c_str()) != 0) return Error::Sys(errno, "chdir " + new_root);
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) return Error::Sys(errno, "move the tmpfs root onto /");
  if (::chroot(".") != 0) return Error::Sys(errno, "chroot into the tmpfs root");
  if (::chdir("/") != 0) return Error::Sys(errno, "chdir /");
  ::execv(self.c_str(), argv);
  return true;  // exec failed: carry on in the new root with this image
}

}  // namespace cask::agent
