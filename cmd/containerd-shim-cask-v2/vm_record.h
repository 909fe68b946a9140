// The trace a shim leaves in its sandbox container's bundle while it runs a
// VM (<bundle>/cask-vm), so that `delete` can clean up after a shim that
// was killed: QEMU and virtiofsd do not die with their parent, and the
// rootfs binds under the VM's shared/ directory live in the host mount
// namespace.
//
// The record holds the VM's state directory and the shim's identity (pid
// and start time, process_identity.h):
//   vm_dir <absolute path>
//   shim <pid> <start time>
// The VM's own processes and cgroup are recorded by the hypervisor in the
// VM directory (vm_leftovers.h).
#pragma once

#include <string>

#include "lib/base/result.h"
#include "lib/hypervisor/process_identity.h"

namespace cask::shim {

inline constexpr char kVmRecordFile[] = "cask-vm";

struct VmRecord {
  std::string vm_dir;
  hypervisor::ProcessIdentity shim;
};

// Records `vm_dir` with the calling process as the shim.
Status WriteVmRecord(const std::string& bundle, const std::string& vm_dir);
void RemoveVmRecord(const std::string& bundle);
// NOT_FOUND when the bundle has no record; INVALID_ARGUMENT when it is
// malformed (a relative directory, no shim line, bad numbers).
Result<VmRecord> ReadVmRecord(const std::string& bundle);

// For `delete`: if <bundle>/cask-vm names a VM directory and the recorded
// shim is not running (gone, or exiting: a shim being killed may still
// accept on its socket, so liveness is read from its pid and start time,
// never from a connect), kills what the VM left by identity
// (hypervisor::KillVmLeftovers: the pod's cgroup, QEMU and virtiofsd by pid
// + start time; no command-line matching), unmounts everything under the
// directory and removes it, then the record. A live shim's VM is never
// touched. Bounded to about 5 s.
Status CleanupDeadVm(const std::string& bundle);

}  // namespace cask::shim
