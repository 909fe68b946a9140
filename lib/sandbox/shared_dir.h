// SharedDir: the host side of the pod's virtio-fs share (tag "cask",
// mounted at /run/cask/shared in the guest), and every host mount made for
// it.
//
// The guest owns everything it can write through the share, so the share
// is split in two (the design Kata adopted after CVE-2020-28914):
//
//   host_path()  <sandbox>/mounts  the shim's private tree. Binds are made
//                here, never where the guest can reach. A self-bind mount,
//                made private (nothing propagates back to the host's mount
//                peers) and then shared (its own peer group).
//   path()       <sandbox>/shared  what virtiofsd exports: a bind of
//                mounts/ that is read-only, nosuid, nodev and a slave of it,
//                so every bind made in mounts/ later (while the VM runs)
//                appears here and in virtiofsd's namespace, while nothing
//                can be created, renamed, unlinked or symlinked at its top
//                or in the directories between the binds.
//
// A container's rootfs and volumes are writable (unless read-only) through
// their own bind mounts only. Every path operation in mounts/ goes through
// directory fds resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
// | RESOLVE_NO_XDEV) from the fd of mounts/, binds are made with
// open_tree + move_mount onto an fd, and unmounts act on
// /proc/self/fd/N of an fd whose mount id was checked: a symlink or a
// swapped component anywhere is an error, never followed.
//
// Ownership: a SharedDir owns both directories and every mount under them.
// Teardown (also run by the destructor) detaches all of them and only then
// removes the directories: a host rootfs bound in here is never descended
// into or deleted.
//
// Thread safety: not internally synchronised; the owner serialises calls.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::sandbox {

// The share as its owner (the Sandbox) uses it: SharedDir below, or a test
// implementation (host_mounts.h). Each method has SharedDir's contract.
class Share {
 public:
  virtual ~Share() = default;
  virtual const std::string& path() const = 0;
  virtual const std::string& host_path() const = 0;
  virtual Status Bind(const std::string& host_src, const std::string& rel, bool readonly) = 0;
  virtual Result<bool> Exists(const std::string& rel) const = 0;
  virtual Status Remove(const std::string& rel) = 0;
  virtual Status Teardown() = 0;
};

class SharedDir final : public Share {
 public:
  // Creates `host_dir` and `export_dir` (their parents must exist and be
  // trusted; each must not exist or be an empty directory) and mounts them
  // as described above.
  static Result<std::unique_ptr<SharedDir>> Create(std::string host_dir, std::string export_dir);
  // Takes over the pair a SharedDir::Create made elsewhere and Release()d
  // (a pool's VM, whose directory was renamed to here): `host_dir` must be
  // the root of a mount and `export_dir` a mount point, and nothing else
  // may be mounted below either (the VM never ran a workload):
  // FAILED_PRECONDITION otherwise. The result owns both as if it had
  // created them.
  static Result<std::unique_ptr<SharedDir>> Adopt(std::string host_dir, std::string export_dir);
  ~SharedDir() override;
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;

  // The exported directory (virtiofsd's source).
  const std::string& path() const override { return export_path_; }
  // The private tree where the binds are made.
  const std::string& host_path() const override { return host_path_; }

  // Bind-mounts (recursively) `host_src`, a directory or any other file,
  // onto mounts/<rel>, creating the target and its parents; an existing
  // target is ALREADY_EXISTS (mounts are never stacked). `rel` is relative,
  // without empty, "." or ".." components (INVALID_ARGUMENT). `host_src`
  // is trusted (it comes from containerd or the OCI spec, checked by the
  // caller). The bind and everything under it is nosuid and nodev on the
  // host; with `readonly` it is read-only recursively, set before it is
  // attached, so every propagated copy is read-only too.
  Status Bind(const std::string& host_src, const std::string& rel, bool readonly) override;

  // True if mounts/<rel> exists (resolved without following symlinks).
  Result<bool> Exists(const std::string& rel) const override;

  // Detaches every mount at or under mounts/<rel> (lazily: an open file
  // keeps the filesystem alive, not the mount), then removes mounts/<rel>.
  // Missing is fine.
  Status Remove(const std::string& rel) override;

  // Detaches the export and everything under mounts/, then removes both
  // directories. Idempotent; the first error is returned but the teardown
  // goes as far as it safely can.
  Status Teardown() override;

  // Gives up ownership without unmounting or removing anything (the mounts
  // go along with a handed-over VM, to the SharedDir::Adopt of the taker).
  void Release();

 private:
  // Both paths absolute (INVALID_ARGUMENT otherwise), their parents
  // canonicalised (mount points in mountinfo are canonical); mounts nothing.
  static Result<std::unique_ptr<SharedDir>> AtCanonicalPaths(const std::string& host_dir,
                                                             const std::string& export_dir);
  SharedDir(std::string host_path, std::string export_path)
      : host_path_(std::move(host_path)), export_path_(std::move(export_path)) {}

  const std::string host_path_;
  const std::string export_path_;
  UniqueFd root_;  // O_PATH fd of the self-bind at host_path_
  bool host_created_ = false;
  bool export_created_ = false;
  bool removed_ = false;
};

// The rule for a path relative to the share (Bind, Exists, Remove): not
// absolute, no empty, "." or ".." component (INVALID_ARGUMENT).
Status CheckShareRelative(const std::string& rel);

// Helpers over /proc/self/mountinfo, exposed for tests.

// Mount points (field 5, unescaped) at or below `dir` in `mountinfo`,
// deepest first; a mount point listed several times (stacked mounts)
// appears that many times.
std::vector<std::string> MountPointsUnder(std::string_view mountinfo, const std::string& dir);
// The same over the live table of this process.
Result<std::vector<std::string>> LiveMountPointsUnder(const std::string& dir);
// Detaches (MNT_DETACH) every mount at or below `dir`, shallowest first (a
// detached mount takes its children along). Each mount point is opened
// beneath `dir` without following symlinks and must carry the mount id
// that mountinfo lists for it, and the unmount acts on that fd: a path a
// guest swapped meanwhile is never followed to a host mount. Leaves
// nothing mounted or returns an error naming the mount point.
Status UnmountAllUnder(const std::string& dir);
// RemoveAll that first checks that nothing at or below `path` is mounted.
Status RemoveTreeNoMounts(const std::string& path);

}  // namespace cask::sandbox
