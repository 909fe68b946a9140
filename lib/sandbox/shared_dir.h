// SharedDir: the host directory that virtiofsd exports to the guest (tag
// "cask", mounted at /run/cask/shared in the guest), and every host mount
// made inside it.
//
// On Create the directory becomes a mount point of its own (a bind mount
// onto itself) that is first made private -- so nothing mounted inside it
// propagates back to the host's mount peers -- and then shared, as the only
// member of a new peer group. virtiofsd (started after Create) copies the
// mount into its own namespace as a slave, so the container rootfs binds made
// later, while the VM runs, still reach the guest.
//
// Ownership: a SharedDir owns the directory and every mount under it.
// Teardown (also run by the destructor) unmounts all of them, deepest first
// (lazily if busy), and only then removes the directory: a host rootfs bound
// in here is never descended into or deleted.
//
// Thread safety: not internally synchronised; the owner serialises calls.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/base/result.h"

namespace cask::sandbox {

class SharedDir {
 public:
  // Creates `path` (its parent must exist; `path` must not exist or be an
  // empty directory) and makes it a private-then-shared mount point.
  static Result<std::unique_ptr<SharedDir>> Create(std::string path);
  ~SharedDir();
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;

  const std::string& path() const { return path_; }

  // Bind-mounts (recursively) `host_src`, a directory or any other file,
  // onto <path>/<rel>, creating the target and its parents; an existing
  // target is ALREADY_EXISTS (mounts are never stacked). `rel` is relative,
  // without "." or ".." components. With `readonly` the top mount is
  // remounted read-only.
  Status Bind(const std::string& host_src, const std::string& rel, bool readonly);

  // Unmounts every mount at or under <path>/<rel>, deepest first (detaching
  // lazily what is busy), then removes <path>/<rel>. Missing is fine.
  Status Remove(const std::string& rel);

  // Unmounts everything under the directory and the directory itself, then
  // removes it. Idempotent; the first error is returned but the teardown
  // goes as far as it safely can.
  Status Teardown();

 private:
  explicit SharedDir(std::string path) : path_(std::move(path)) {}
  Result<std::string> Resolve(const std::string& rel) const;

  std::string path_;
  bool mounted_ = false;
  bool removed_ = false;
};

// Helpers over /proc/self/mountinfo, exposed for tests.

// Mount points (field 5, unescaped) at or below `dir` in `mountinfo`,
// deepest first; a mount point listed several times (stacked mounts)
// appears that many times.
std::vector<std::string> MountPointsUnder(std::string_view mountinfo, const std::string& dir);
// The same over the live table of this process.
Result<std::vector<std::string>> LiveMountPointsUnder(const std::string& dir);
// Unmounts every mount at or below `dir`, deepest first, MNT_DETACH when
// busy. Leaves nothing mounted or returns an error naming the mount point.
Status UnmountAllUnder(const std::string& dir);
// RemoveAll that first checks that nothing at or below `path` is mounted.
Status RemoveTreeNoMounts(const std::string& path);

}  // namespace cask::sandbox
