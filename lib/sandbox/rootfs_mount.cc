#include "lib/sandbox/rootfs_mount.h"

#include <sys/mount.h>

#include <cerrno>
#include <string_view>

namespace cask::sandbox {
namespace {

struct FlagWord {
  std::string_view word;
  bool clear;  // the option clears the flag ("rw", "suid", ...)
  unsigned long flag;
};

constexpr FlagWord kFlagWords[] = {
    {"async", true, MS_SYNCHRONOUS},   {"atime", true, MS_NOATIME},      {"bind", false, MS_BIND},
    {"defaults", false, 0},            {"dev", true, MS_NODEV},          {"diratime", true, MS_NODIRATIME},
    {"dirsync", false, MS_DIRSYNC},    {"exec", true, MS_NOEXEC},        {"mand", false, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},    {"nodev", false, MS_NODEV},       {"nodiratime", false, MS_NODIRATIME},
    {"noexec", false, MS_NOEXEC},      {"nomand", true, MS_MANDLOCK},    {"norelatime", true, MS_RELATIME},
    {"nostrictatime", true, MS_STRICTATIME}, {"nosuid", false, MS_NOSUID}, {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},  {"remount", false, MS_REMOUNT},   {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},           {"strictatime", false, MS_STRICTATIME}, {"suid", true, MS_NOSUID},
    {"sync", false, MS_SYNCHRONOUS},
};

struct PropWord {
  std::string_view word;
  unsigned long flag;
};
constexpr PropWord kPropWords[] = {
    {"private", MS_PRIVATE},     {"rprivate", MS_PRIVATE | MS_REC}, {"shared", MS_SHARED},
    {"rshared", MS_SHARED | MS_REC}, {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

// Each umount removes the top of the stack; bounded, as a broken mount
// table must not hang a teardown.
constexpr int kMaxStackedMounts = 64;

}  // namespace

MountOptions ParseMountOptions(const std::vector<std::string>& options) {
  MountOptions out;
  for (const auto& o : options) {
    bool matched = false;
    for (const auto& fw : kFlagWords) {
      if (o == fw.word) {
        if (fw.clear) out.flags &= ~fw.flag;
        else out.flags |= fw.flag;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    for (const auto& pw : kPropWords) {
      if (o == pw.word) {
        out.propagation |= pw.flag;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (!out.data.empty()) out.data += ',';
    out.data += o;
  }
  return out;
}

Status UnmountStack(const std::string& dir) {
  for (int i = 0; i < kMaxStackedMounts; ++i) {
    if (::umount2(dir.c_str(), 0) == 0) continue;
    int err = errno;
    if (err == EINVAL || err == ENOENT) return Ok();  // not (or no longer) a mount point
    if (err == EBUSY) {
      if (::umount2(dir.c_str(), MNT_DETACH) == 0) continue;
      err = errno;
    }
    return Error::Sys(err, "unmount " + dir);
  }
  return Error::Internal("unmount " + dir + ": still mounted after " + std::to_string(kMaxStackedMounts) +
                         " unmounts");
}

Result<RootfsMount> RootfsMount::Mount(const std::vector<MountSpec>& mounts, const std::string& target) {
  RootfsMount owner;
  owner.target_ = target;  // from the first mount on, the destructor undoes them
  for (const MountSpec& m : mounts) {
    MountOptions mo = ParseMountOptions(m.options);
    std::string what = "mount " + (m.type.empty() ? std::string("(no type)") : m.type) + " " + m.source + " onto " + target;
    bool bind = (mo.flags & MS_BIND) != 0 || m.type == "bind";
    unsigned long flags = mo.flags;
    if (m.type == "bind") flags |= MS_BIND;
    const char* data = mo.data.empty() ? nullptr : mo.data.c_str();
    unsigned long first = bind ? flags & ~MS_RDONLY : flags;
    if (::mount(m.source.c_str(), target.c_str(), bind ? nullptr : m.type.c_str(), first, data) != 0)
      return Error::Sys(errno, what);
    // A bind mount ignores MS_RDONLY on the first call: remount to apply it.
    if (bind && (flags & MS_RDONLY) &&
        ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | (flags & ~(MS_REC | MS_BIND)),
                nullptr) != 0)
      return Error::Sys(errno, what + " (read-only remount)");
    if (mo.propagation && ::mount(nullptr, target.c_str(), nullptr, mo.propagation, nullptr) != 0)
      return Error::Sys(errno, what + " (propagation)");
  }
  return owner;
}

RootfsMount& RootfsMount::operator=(RootfsMount&& o) noexcept {
  if (this != &o) {
    (void)Unmount();
    target_ = std::move(o.target_);
    o.target_.clear();
  }
  return *this;
}

RootfsMount::~RootfsMount() { (void)Unmount(); }

Status RootfsMount::Unmount() {
  if (target_.empty()) return Ok();
  CASK_TRY(UnmountStack(target_));
  target_.clear();
  return Ok();
}

}  // namespace cask::sandbox
