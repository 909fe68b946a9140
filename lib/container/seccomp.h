// seccomp: an OCI seccomp profile compiled to a classic BPF program.
//
// The profile is compiled in the agent, before any fork, with libseccomp
// (so a bad profile fails Create, not the child); the child only loads the
// ready program with seccomp(2), which needs no memory allocation.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/oci/spec.h"

namespace cask::container {

struct SeccompProgram {
  std::vector<sock_filter> instructions;
  unsigned int flags = 0;  // SECCOMP_FILTER_FLAG_* from the profile's flags
  bool empty() const { return instructions.empty(); }
};

// Compiles `profile`. Syscall names unknown to libseccomp are skipped (as
// runc and crun do: profiles list syscalls of newer kernels); unknown
// actions, operators, architectures or flags, and SCMP_ACT_NOTIFY, are
// INVALID_ARGUMENT errors.
Result<SeccompProgram> CompileSeccomp(const oci::Seccomp& profile);

// The libseccomp pseudo-filter-code text of `profile`, for tests and debug.
Result<std::string> SeccompPfc(const oci::Seccomp& profile);

// Child side: installs the program in the calling thread (seccomp(2)). The
// caller must have no_new_privs set or CAP_SYS_ADMIN.
Status LoadSeccomp(const SeccompProgram& prog);

}  // namespace cask::container
