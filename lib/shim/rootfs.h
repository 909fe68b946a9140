// The task's root filesystem on the host: the snapshot mounts containerd
// hands over in Create are mounted, in order, onto <bundle>/rootfs
// (containerd 1.6 sends no target; shim-v2-protocol.md §3.3), and unmounted
// again on Delete and by `delete`.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/shim/events.h"

namespace cask::shim {

// mount(2) flags and the data string from fstab-style options, as
// containerd's mount package splits them ("ro", "rbind", "nosuid", ... are
// flags; "lowerdir=...", "index=off", ... go to data). `propagation` is
// MS_PRIVATE/MS_SHARED/... when such an option is present, else 0.
struct MountOptions {
  unsigned long flags = 0;
  unsigned long propagation = 0;
  std::string data;
};
MountOptions ParseMountOptions(const std::vector<std::string>& options);

// Mounts each of `mounts` onto `target` (an existing directory), in order.
// On failure, everything mounted so far is unmounted again and the error
// names the mount ("mount overlay onto /b/rootfs: ...").
Status MountAll(const std::vector<RootfsMount>& mounts, const std::string& target);

}  // namespace cask::shim
