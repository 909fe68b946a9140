// Unmounting a stack of mounts on one directory.
#pragma once

#include <string>

#include "lib/base/result.h"

namespace cask::sys {

// Unmounts every mount stacked on `dir` (MNT_DETACH when busy), at most 64:
// bounded, as a broken mount table must not hang a teardown. A directory
// that is not a mount point, or does not exist, is fine.
Status UnmountStack(const std::string& dir);

}  // namespace cask::sys
