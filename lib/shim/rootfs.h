// The task's root filesystem on the host: the snapshot mounts containerd
// hands over in Create are mounted, in order, onto <bundle>/rootfs
// (containerd 1.6 sends no target), and unmounted
// again on Delete and by `delete`.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/shim/events.h"

namespace cask::shim {

// Mounts each of `mounts` onto `target` (an existing directory), in order.
// On failure, everything mounted so far is unmounted again and the error
// names the mount ("mount overlay onto /b/rootfs: ..."). Options are
// split by lib/sys/mount_options.h, as containerd's mount package splits
// them ("ro", "rbind", "nosuid"... are flags; "lowerdir=...", "index=off"...
// go to data); an unsupported option (idmap...) is INVALID_ARGUMENT.
Status MountAll(const std::vector<RootfsMount>& mounts, const std::string& target);

}  // namespace cask::shim
