// Small file helpers returning Result. All paths are host (or guest) paths;
// nothing here resolves paths inside a container root (see lib/container).
#pragma once

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
// mkdir -p.
Status MkdirAll(const std::string& path, mode_t mode = 0755);
// rm -rf that never crosses a mount point: a mount (bind mounts of the same
// filesystem included) anywhere in the tree is FAILED_PRECONDITION, and
// nothing below it is touched.
Status RemoveAll(const std::string& path);
bool PathExists(const std::string& path);
// Parent directory and last component ("/a/b" -> "/a", "b").
std::string Dirname(const std::string& path);
std::string Basename(const std::string& path);
// Joins with exactly one '/' between parts.
std::string JoinPath(std::string_view a, std::string_view b);

}  // namespace cask
