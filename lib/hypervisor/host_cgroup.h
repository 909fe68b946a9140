// The pod's host cgroup: one owner for the cgroup directories that hold a
// VM's host processes (QEMU, virtiofsd and, when configured, the shim).
//
// Everything a pod runs on the host is charged to its cgroup and limited
// there (memory, CPU, number of tasks), and teardown kills the whole group
// at once, without looking at process names or command lines: membership
// in the cgroup is the identity.
//
// Two layouts are supported, as found in /proc/self/mountinfo:
//  - cgroup v2 with the memory, cpu and pids controllers on the unified
//    hierarchy: one directory <unified>/<parent>/<name>, controllers enabled
//    in the parent's cgroup.subtree_control;
//  - cgroup v1 (or "hybrid": v1 controllers plus a controller-less cgroup2
//    mount): one directory per hierarchy, <memory|cpu|pids mount>/<parent>/
//    <name>, plus one in the cgroup2 mount when there is one, so that the
//    kernel's cgroup.kill can end the group in one write.
// Processes join at spawn (SpawnOptions::cgroup_procs_fds from
// OpenProcsFiles(), written by the child before exec: no window in which
// they run outside), or later with Add().
//
// Thread safety: none; one owner at a time. Destroying a HostCgroup that
// still owns directories kills its members and removes them (best effort).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::hypervisor {

// The cgroup mounts of this host.
struct CgroupLayout {
  std::string unified;           // the cgroup2 mount point, "" if none
  bool unified_controllers = false;  // memory, cpu and pids are on the unified hierarchy
  std::string memory, cpu, pids;     // v1 hierarchy mount points ("" if not mounted as v1)

  // v2 when the unified hierarchy carries the controllers; v1 when the
  // three v1 hierarchies are mounted; otherwise no usable layout.
  bool v2() const { return !unified.empty() && unified_controllers; }
  bool v1() const { return !v2() && !memory.empty() && !cpu.empty() && !pids.empty(); }
  bool usable() const { return v2() || v1(); }
};

// Parses /proc/self/mountinfo text. `unified_controllers_text` is the
// content of <unified>/cgroup.controllers (read by DetectCgroupLayout).
CgroupLayout ParseCgroupLayout(std::string_view mountinfo, std::string_view unified_controllers_text);
// Reads /proc/self/mountinfo and the unified root's cgroup.controllers.
Result<CgroupLayout> DetectCgroupLayout();

struct CgroupLimits {
  uint64_t memory_bytes = 0;    // 0: no memory limit
  uint64_t cpu_quota_us = 0;    // per cpu_period_us; 0: no CPU limit
  uint64_t cpu_period_us = 100000;
  uint64_t pids_max = 0;        // 0: no limit on tasks
};

// A path below a cgroup mount: one or more components of [A-Za-z0-9_.-],
// separated by '/', none of them "." or "..". INVALID_ARGUMENT naming `what`.
Status ValidateCgroupName(std::string_view name, std::string_view what);

class HostCgroup {
 public:
  HostCgroup() = default;
  ~HostCgroup();
  HostCgroup(HostCgroup&& o) noexcept;
  HostCgroup& operator=(HostCgroup&& o) noexcept;
  HostCgroup(const HostCgroup&) = delete;
  HostCgroup& operator=(const HostCgroup&) = delete;

  // Creates <mount>/<parent>/<name> in each hierarchy the layout uses
  // (parent directories are created as needed and kept), and applies the
  // limits. ALREADY_EXISTS if the directory exists (another pod, or a
  // leftover that the dead-shim cleanup has not removed yet);
  // FAILED_PRECONDITION if the layout is not usable. A failure removes
  // whatever this call created.
  static Result<HostCgroup> Create(const CgroupLayout& layout, std::string_view parent, std::string_view name,
                                   const CgroupLimits& limits);
  // Takes ownership of existing directories (e.g. read back from a VM
  // record by the dead-shim cleanup). Each must be absolute and lie below
  // /sys/fs/cgroup/ (INVALID_ARGUMENT otherwise); missing ones are skipped.
  static Result<HostCgroup> Adopt(const std::vector<std::string>& dirs);

  bool valid() const { return !dirs_.empty(); }
  // The directories owned, the cgroup2 one (if any) first.
  std::vector<std::string> dirs() const;

  // One writable "cgroup.procs" per directory, for SpawnOptions.
  Result<std::vector<UniqueFd>> OpenProcsFiles() const;
  // Moves process `pid` (all its threads) into every directory. Adding the
  // calling process remembers where it was, so Remove() can move it back.
  Status Add(pid_t pid);
  // The processes in the group (union over the directories, sorted).
  Result<std::vector<pid_t>> Pids() const;
  // SIGKILLs every member except the calling process (which Remove moves
  // out first) and waits until the group is empty, up to `timeout`
  // (DEADLINE_EXCEEDED naming the survivors). Uses cgroup.kill where the
  // kernel has it; otherwise signals each member through a pidfd opened
  // after checking, in /proc/<pid>/cgroup, that it is still a member.
  Status KillAll(std::chrono::milliseconds timeout);
  // Moves the caller back where it was (if Add put it here), KillAll, then
  // removes every directory. Idempotent; after success valid() is false.
  Status Remove(std::chrono::milliseconds timeout);

 private:
  struct Dir {
    std::string path;
    std::string mount;       // the hierarchy's mount point ("" if adopted)
    std::string controller;  // "" for cgroup2, else the v1 controller
    std::string origin;      // the caller's cgroup before Add(getpid()), "" if none
    bool created = false;
  };
  Status MoveCallerBack();
  std::vector<Dir> dirs_;
};

// The calling process's cgroup path (relative to the hierarchy's root, as
// /proc/self/cgroup shows it) in the cgroup2 hierarchy (controller "") or
// the v1 hierarchy of `controller`. NOT_FOUND if there is no such line.
Result<std::string> SelfCgroupPath(std::string_view proc_self_cgroup, std::string_view controller);

}  // namespace cask::hypervisor
