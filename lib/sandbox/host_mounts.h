// HostMounts: the one seam between a sandbox's state and event logic and
// the host mounts it makes. Two kinds of mount, nothing else:
//
//   the share   the pod's virtio-fs export and every bind in it
//               (SharedDir: mounts/ and its read-only slave shared/);
//   the rootfs  containerd's snapshot mounts stacked on <bundle>/rootfs
//               (RootfsMount).
//
// Production uses RealHostMounts(): the kernel's mounts, needing
// CAP_SYS_ADMIN. Unit tests of the logic above (Sandbox, Container, the
// shim's Task service) inject a recording implementation through
// SandboxOptions::mounts (lib/sandbox/fake_mounts_for_test.h), so they run
// without root; the mounts themselves are tested on their own
// (shared_dir_test, rootfs_mount_test, as root) and end to end.
//
// Contracts are those of SharedDir and RootfsMount::Mount/UnmountStack;
// an implementation must keep them (errors included: ALREADY_EXISTS for a
// stacked bind, INVALID_ARGUMENT for a bad relative path or mount option).
//
// Thread safety: implementations are safe to call from any thread; a Share
// is serialised by its owner (the Sandbox's lock).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/sandbox/rootfs_mount.h"
#include "lib/sandbox/shared_dir.h"

namespace cask::sandbox {

class HostMounts {
 public:
  virtual ~HostMounts() = default;
  // SharedDir::Create's contract.
  virtual Result<std::unique_ptr<Share>> CreateShare(const std::string& host_dir, const std::string& export_dir) = 0;
  // Mounts `mounts` onto `target` in order (RootfsMount::Mount's contract;
  // on failure what was mounted is left for UnmountRootfs).
  virtual Status MountRootfs(const std::vector<MountSpec>& mounts, const std::string& target) = 0;
  // Unmounts everything stacked on `target` (UnmountStack's contract).
  virtual Status UnmountRootfs(const std::string& target) = 0;
};

// The kernel's mounts (stateless; one shared instance).
std::shared_ptr<HostMounts> RealHostMounts();

}  // namespace cask::sandbox
