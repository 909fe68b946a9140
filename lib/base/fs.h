// Small file helpers returning Result. All paths are host (or guest) paths;
// nothing here resolves paths inside a container root (see lib/container).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask {

// open(2) with O_CLOEXEC added.
Result<UniqueFd> Open(const std::string& path, int flags, mode_t mode = 0);
Result<std::string> ReadFile(const std::string& path);
// Writes (creating or truncating) `path` with `data`.
Status WriteFile(const std::string& path, std::string_view data, mode_t mode = 0644);
// Writes to "<dir>/.<name>.tmp" then renames over `path`.
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0644);
// Writes every byte, retrying on EINTR and short writes.
Status WriteAll(int fd, std::string_view data);
// Reads exactly n bytes. Returns NOT_FOUND-free Error with code kUnavailable
// ("end of stream") on EOF before n bytes.
Status ReadFull(int fd, char* buf, size_t n);
// mkdir -p. Follows symlinks: only for trees nobody hostile can write (use
// MkdirAllIn inside a tree a guest or container can write).
Status MkdirAll(const std::string& path, mode_t mode = 0755);
// rm -rf that never crosses a mount point: a mount (bind mounts of the same
// filesystem included) anywhere in the tree is FAILED_PRECONDITION, and
// nothing below it is touched. Never follows a symlink (a symlink is
// unlinked, not its target). Iterative with at most kRemoveMaxOpenDirs
// directories open at once: a deeper tree (say 100,000 levels made by a
// guest) is flattened by renaming its deep subtrees up to the top of the
// removal, so any depth is removed with bounded stack and fds.
Status RemoveAll(const std::string& path);
inline constexpr size_t kRemoveMaxOpenDirs = 32;

// ---- Paths inside a tree someone else can write (a guest, a container) ----
//
// Each of these resolves `rel` beneath the directory fd `root` with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS):
// an absolute path, a ".." that leaves `root` or a symlink in any
// component (the last one included) fails (EXDEV / ELOOP / ENOTDIR as the
// kernel reports it) instead of being followed, so a component swapped for
// a symlink while we work cannot redirect us outside `root`. With
// `same_mount` RESOLVE_NO_XDEV is added as well: the path may not cross
// into another mount (a bind a guest can write, say).

// openat2(root, rel, flags | O_CLOEXEC, mode) with the resolve flags above.
// `rel` empty opens `root` itself (again, with `flags`).
Result<UniqueFd> OpenBeneath(int root, const std::string& rel, int flags, mode_t mode = 0, bool same_mount = false);
// mkdir -p of `rel` beneath `root`: every missing component is created
// with mkdirat on the fd of its parent (already-existing components must
// be directories, not symlinks). Returns an O_PATH fd of the last directory,
// usable as the dirfd of *at calls.
Result<UniqueFd> MkdirAllIn(int root, const std::string& rel, mode_t mode = 0755, bool same_mount = false);
// RemoveAll of `rel` beneath `root`: the parent is resolved as above; the
// tree itself is removed as RemoveAll does. Missing is fine.
Status RemoveAllIn(int root, const std::string& rel);
// True when the fd is the root of a mount (STATX_ATTR_MOUNT_ROOT).
Result<bool> IsMountRootFd(int fd);
// The id of the mount the fd is on (statx STATX_MNT_ID), as in the first
// field of /proc/self/mountinfo.
Result<uint64_t> MountIdOf(int fd);
bool PathExists(const std::string& path);
// Parent directory and last component ("/a/b" -> "/a", "b").
std::string Dirname(const std::string& path);
std::string Basename(const std::string& path);
// Joins with exactly one '/' between parts.
std::string JoinPath(std::string_view a, std::string_view b);

}  // namespace cask
