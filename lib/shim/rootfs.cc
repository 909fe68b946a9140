#include "lib/shim/rootfs.h"

#include <sys/mount.h>

#include <cerrno>

#include "lib/shim/delete.h"
#include "lib/sys/mount_options.h"

namespace cask::shim {
Status MountAll(const std::vector<RootfsMount>& mounts, const std::string& target) {
  for (size_t i = 0; i < mounts.size(); ++i) {
    const RootfsMount& m = mounts[i];
    std::string what = "mount " + (m.type.empty() ? std::string("(no type)") : m.type) + " " + m.source + " onto " + target;
    auto parsed = sys::ParseMountOptions(m.options);
    if (!parsed.ok()) {
      (void)UnmountAll(target);
      Error e = std::move(parsed).error();
      e.Wrap(what);
      return e;
    }
    const sys::MountOptions& mo = *parsed;
    auto fail = [&](int err) -> Status {
      (void)UnmountAll(target);
      return Error::Sys(err, what);
    };
    bool bind = (mo.flags & MS_BIND) != 0 || m.type == "bind";
    unsigned long flags = mo.flags;
    if (m.type == "bind") flags |= MS_BIND;
    const char* data = mo.data.empty() ? nullptr : mo.data.c_str();
    unsigned long first = bind ? flags & ~MS_RDONLY : flags;
    if (::mount(m.source.c_str(), target.c_str(), bind ? nullptr : m.type.c_str(), first, data) != 0)
      return fail(errno);
    // A bind mount ignores MS_RDONLY on the first call: remount to apply it.
    if (bind && (flags & MS_RDONLY) &&
        ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | (flags & ~(MS_REC | MS_BIND)), nullptr) != 0)
      return fail(errno);
    for (unsigned long p : mo.propagation) {
      if (::mount(nullptr, target.c_str(), nullptr, p, nullptr) != 0) return fail(errno);
    }
  }
  return Ok();
}

}  // namespace cask::shim
