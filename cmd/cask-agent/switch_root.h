// Leaving the initramfs for a tmpfs root, once, at boot.
//
// The initramfs root is the kernel's `rootfs` mount, which has no parent:
// pivot_root(2) refuses it (EINVAL), so containers could only be entered
// with MS_MOVE + chroot, which is weaker. PID 1 therefore copies the
// initramfs into a fresh tmpfs, deletes the originals (freeing their
// memory), moves the tmpfs over "/", chroots into it and re-executes
// itself; after that every container mount namespace has a pivotable root.
#pragma once

#include <string>

#include "lib/base/result.h"

namespace cask::agent {

// True when `mountinfo` (the text of /proc/self/mountinfo) shows "/" as the
// initramfs (file-system type "rootfs").
bool RootIsInitramfs(const std::string& mountinfo);

// Copies the tree at `src_dir` into `dst_dir` (which exists): directories,
// regular files, symlinks and device/fifo/socket nodes, with modes, owners
// and times. Entries named `skip` directly under `src_dir`, and anything on
// another file system than `src_dir`, are left out.
Status CopyTree(const std::string& src_dir, const std::string& dst_dir, const std::string& skip);

// Deletes everything under `dir` on the same file system as `dir`, except
// the entry `skip` directly under it. Best effort; returns the first error.
Status DeleteTree(const std::string& dir, const std::string& skip);

// The whole switch (needs CAP_SYS_ADMIN, PID 1 on the initramfs). Mounts
// /proc only briefly to read mountinfo. Returns false when "/" is not the
// initramfs (nothing done). On success it does not return: it execs
// `self` with `argv`. If the exec fails after the switch, returns true and
// the caller carries on in the new root.
Result<bool> SwitchRootFromInitramfs(const std::string& self, char** argv);

}  // namespace cask::agent
