// The trace a shim leaves in its sandbox container's bundle while it runs a
// VM (<bundle>/cask-vm: the VM's state directory), so that `delete` can
// clean up after a shim that was killed: QEMU and virtiofsd do not die with
// their parent, and the rootfs binds under the VM's shared/ directory live
// in the host mount namespace.
#pragma once

#include <string>

#include "lib/base/result.h"

namespace cask::shim {

inline constexpr char kVmRecordFile[] = "cask-vm";

Status WriteVmRecord(const std::string& bundle, const std::string& vm_dir);
void RemoveVmRecord(const std::string& bundle);

// For `delete`: if <bundle>/cask-vm names a VM directory and the shim that
// served <bundle>/address no longer accepts connections, kills every process
// whose command line mentions that directory (QEMU, virtiofsd), unmounts
// everything under it and removes it, then the record. A live shim's VM is
// never touched. Bounded to about 3 s.
Status CleanupDeadVm(const std::string& bundle);

}  // namespace cask::shim
