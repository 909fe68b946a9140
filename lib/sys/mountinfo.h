// /proc/<pid>/mountinfo: the one parser of the kernel's mount table.
//
// Each line reads (proc(5)):
//   <id> <parent> <major:minor> <root> <mount point> <options> [<optional>...] - <fstype> <source> <super options>
// Paths are octal-escaped by the kernel (space as \040, tab \011, newline
// \012, backslash \134); the parser unescapes root, mount point and source.
// Input may be hostile (a guest's file read back, a fuzzer): lines that do
// not have this shape are skipped, never trusted in part.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"

namespace cask::sys {

struct MountInfo {
  int id = 0;
  int parent_id = 0;
  std::string root;         // root of the mount within its file system
  std::string mount_point;  // absolute, unescaped
  std::string options;      // per-mount options ("rw,nosuid,relatime")
  std::string fstype;       // "ext4", "rootfs", "fuse.virtiofsd"... (after " - ")
  std::string source;       // unescaped
  std::string super_options;  // per-superblock options ("rw,memory"); may be empty
};

// Every well-formed line of `text`, in order (upper mounts of a stack come
// after the ones they cover, as the kernel lists them).
std::vector<MountInfo> ParseMountInfo(std::string_view text);

// Reads and parses /proc/self/mountinfo.
Result<std::vector<MountInfo>> ReadMountInfo();

// "\040" -> " ": the kernel's escaping of paths in mountinfo (octal, exactly
// three digits). Anything else is kept as is.
std::string UnescapeMountPath(std::string_view s);

// True when `path` is `dir` or below it (string prefix on whole components;
// both absolute; every path is below "/").
bool PathIsAtOrBelow(std::string_view path, std::string_view dir);

// Mount points at or below `dir`, ordered for unmounting: deepest first,
// and among mounts stacked on one point the upper (later) one first, so
// unmounting in this order peels every stack top-down. `dir` may end in '/'.
std::vector<std::string> MountPointsUnder(const std::vector<MountInfo>& mounts, std::string_view dir);

}  // namespace cask::sys
