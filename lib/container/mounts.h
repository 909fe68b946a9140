// Mounts: the container's root file system, built in its new mount
// namespace before pivot_root.
//
// Option parsing and planning (ParseMountOptions, PlanRootfs) are pure and
// run in the agent, so a bad option fails Create before anything is made.
// Setup*/PivotRoot/*Paths run in the container's init process, in its new
// mount namespace; paths inside the rootfs are resolved with openat2
// RESOLVE_IN_ROOT, so symlinks in the image cannot point mounts outside it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/oci/spec.h"
#include "lib/sys/mount_options.h"

namespace cask::container {

// Mount option words (one table, lib/sys/mount_options.h): "ro,nosuid,
// mode=755,rprivate" -> flags + data + propagation; unsupported options
// (idmap, tmpcopyup) are INVALID_ARGUMENT errors.
using sys::MountOptions;
using sys::ParseMountOptions;
using sys::ParsePropagation;

struct PlannedMount {
  oci::Mount mount;
  MountOptions opts;
};

// Everything the init process does to its mount namespace.
struct RootfsPlan {
  std::string rootfs;                  // guest path, absolute
  unsigned long root_propagation = 0;  // applied to "/" first (MS_REC|MS_SLAVE default)
  unsigned long final_propagation = 0; // rootfs_propagation, applied after pivot
  std::vector<PlannedMount> mounts;
  bool dev_tmpfs = false;              // the spec mounts a tmpfs on /dev
  std::vector<oci::Device> devices;
  std::string cgroup_path;             // container cgroup, bound for "cgroup" mounts
  bool cgroup_ns = false;
  std::vector<std::string> masked_paths, readonly_paths;
  bool readonly_root = false;
  bool no_pivot = false;               // MS_MOVE + chroot instead of pivot_root
};

Result<RootfsPlan> PlanRootfs(const oci::Spec& spec, const std::string& rootfs);

// Child side, in the new mount namespace: propagation of "/", bind of the
// rootfs onto itself, the spec's mounts, /dev nodes and links.
Status SetupRootfs(const RootfsPlan& plan);
// Child side: pivot_root into `rootfs` (falls back to MS_MOVE + chroot when
// the current root cannot be pivoted, e.g. an initramfs).
Status EnterRootfs(const RootfsPlan& plan);
// Child side, after EnterRootfs: read-only paths, then masked paths.
Status RestrictPaths(const RootfsPlan& plan);
// mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY) on the mount at `path` and
// every mount below it. (A bind mount with "ro" gets this: PlanRootfs adds
// MOUNT_ATTR_RDONLY to its attr_set unless the options say "rrw".)
Status SetRecursiveReadOnly(const std::string& path);
// Child side, last: remounts "/" read-only if the spec asks.
Status FinishRootfs(const RootfsPlan& plan);

}  // namespace cask::container
