// fstab-style mount options ("ro", "rbind", "nosuid", "mode=755", "rprivate",
// "rro"...) split into what mount(2), mount_setattr(2) and the file system
// take: the one table of option words, used for the guest's container
// mounts, the agent's sandbox mounts and the shim's rootfs mounts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"

namespace cask::sys {

struct MountOptions {
  unsigned long flags = 0;                 // MS_* for mount(2), incl. MS_BIND / MS_REC
  std::vector<unsigned long> propagation;  // MS_SHARED/SLAVE/PRIVATE/UNBINDABLE (| MS_REC), in order
  uint64_t attr_set = 0, attr_clr = 0;     // recursive attributes (rro, rnosuid...) for mount_setattr
  std::string data;                        // file-system options, comma separated ("mode=755,size=64k")
  bool bind() const;
};

// Options are applied left to right: a later "rw" clears an earlier "ro";
// "strictatime", "relatime" and "noatime" select one atime mode. Words the
// table does not know go to `data` in order; empty words are dropped.
// Options that need work cask does not do (idmap, ridmap, tmpcopyup,
// copy-symlink) are INVALID_ARGUMENT.
Result<MountOptions> ParseMountOptions(const std::vector<std::string>& options);

// "" -> 0; "private" / "rslave" / "shared" / "runbindable" ... -> MS_* flags;
// anything else is INVALID_ARGUMENT.
Result<unsigned long> ParsePropagation(std::string_view word);

}  // namespace cask::sys
