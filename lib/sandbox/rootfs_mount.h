// A container's root filesystem on the host: the snapshot mounts containerd
// hands over in Create (an overlay, a bind, ...) mounted in order onto one
// directory (<bundle>/rootfs; containerd 1.6 sends no target), and
// unmounted again by the owner.
//
// RootfsMount owns those mounts: destroying it unmounts everything stacked
// on the directory (lazily when busy). It is the one owner of "containerd's
// rootfs is mounted" for sandbox::Container; the shim's `delete` action
// cleans up after a dead shim with UnmountAll (lib/shim/delete.h).
//
// Thread safety: a plain owner; not shared between threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lib/base/result.h"

namespace cask::sandbox {

class HostMounts;

// One mount as containerd describes it (types.Mount, target unused).
struct MountSpec {
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

class RootfsMount {
 public:
  RootfsMount() = default;  // owns nothing
  // Mounts each of `mounts` onto `target` (an existing directory), in
  // order, options split by lib/sys/mount_options.h (an unsupported one is
  // INVALID_ARGUMENT). On failure everything mounted so far is unmounted again and the
  // error names the mount ("mount overlay overlay onto /b/rootfs: ...").
  static Result<RootfsMount> Mount(const std::vector<MountSpec>& mounts, const std::string& target);
  // The same through `via` (host_mounts.h), which also unmounts them.
  static Result<RootfsMount> Mount(std::shared_ptr<HostMounts> via, const std::vector<MountSpec>& mounts,
                                   const std::string& target);
  ~RootfsMount();  // Unmount(), errors ignored
  RootfsMount(RootfsMount&& o) noexcept : target_(std::move(o.target_)), via_(std::move(o.via_)) {
    o.target_.clear();
  }
  RootfsMount& operator=(RootfsMount&& o) noexcept;
  RootfsMount(const RootfsMount&) = delete;
  RootfsMount& operator=(const RootfsMount&) = delete;

  bool mounted() const { return !target_.empty(); }
  const std::string& target() const { return target_; }
  // Unmounts every mount stacked on the target. Idempotent; after a
  // failure the owner still holds the target (a later call retries).
  Status Unmount();

 private:
  std::string target_;  // empty: nothing owned
  std::shared_ptr<HostMounts> via_;  // null: the kernel's mounts
};

// RootfsMount::Mount's mounts without the owner: mounts `mounts` onto
// `target` in order, leaving what was mounted on failure (the real
// HostMounts::MountRootfs).
Status MountRootfsStack(const std::vector<MountSpec>& mounts, const std::string& target);

// Unmounts every mount stacked on `dir` (MNT_DETACH when busy), at most 64.
// A directory that is not a mount point, or does not exist, is fine.
Status UnmountStack(const std::string& dir);

}  // namespace cask::sandbox
