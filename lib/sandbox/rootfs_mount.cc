#include "lib/sandbox/rootfs_mount.h"

#include "lib/sandbox/host_mounts.h"

#include <sys/mount.h>

#include <cerrno>
#include <string_view>

#include "lib/sys/mount_options.h"
#include "lib/sys/unmount.h"

namespace cask::sandbox {
Status UnmountStack(const std::string& dir) { return sys::UnmountStack(dir); }

Result<RootfsMount> RootfsMount::Mount(const std::vector<MountSpec>& mounts, const std::string& target) {
  return Mount(nullptr, mounts, target);
}

Result<RootfsMount> RootfsMount::Mount(std::shared_ptr<HostMounts> via, const std::vector<MountSpec>& mounts,
                                       const std::string& target) {
  RootfsMount owner;
  owner.target_ = target;  // from the first mount on, the destructor undoes them
  owner.via_ = std::move(via);
  CASK_TRY(owner.via_ ? owner.via_->MountRootfs(mounts, target) : MountRootfsStack(mounts, target));
  return owner;
}

Status MountRootfsStack(const std::vector<MountSpec>& mounts, const std::string& target) {
  for (const MountSpec& m : mounts) {
    std::string what = "mount " + (m.type.empty() ? std::string("(no type)") : m.type) + " " + m.source + " onto " + target;
    // Options split as containerd's mount package splits them; an
    // unsupported one (idmap...) is INVALID_ARGUMENT.
    CASK_ASSIGN_OR_RETURN(sys::MountOptions mo, sys::ParseMountOptions(m.options).Context(what));
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
    for (unsigned long p : mo.propagation)
      if (::mount(nullptr, target.c_str(), nullptr, p, nullptr) != 0) return Error::Sys(errno, what + " (propagation)");
  }
  return Ok();
}

RootfsMount& RootfsMount::operator=(RootfsMount&& o) noexcept {
  if (this != &o) {
    (void)Unmount();
    target_ = std::move(o.target_);
    via_ = std::move(o.via_);
    o.target_.clear();
  }
  return *this;
}

RootfsMount::~RootfsMount() { (void)Unmount(); }

Status RootfsMount::Unmount() {
  if (target_.empty()) return Ok();
  CASK_TRY(via_ ? via_->UnmountRootfs(target_) : UnmountStack(target_));
  target_.clear();
  return Ok();
}


}  // namespace cask::sandbox
