#include "lib/sys/unmount.h"

#include <sys/mount.h>

#include <cerrno>

namespace cask::sys {

Status UnmountStack(const std::string& dir) {
  constexpr int kMaxStackedMounts = 64;
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

}  // namespace cask::sys
