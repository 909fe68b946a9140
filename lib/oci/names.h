// The closed sets of names an OCI spec may use on Linux, with their kernel
// numbers where they have one. Shared by validation (parse.h) and by the
// guest container library, which turns names into numbers for syscalls.
//
// Pure tables: no syscalls, no state. Lookups are exact and case-sensitive,
// as runc's are.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace cask::oci {

// Capabilities of Linux 6.1 ("CAP_CHOWN" = 0 ... "CAP_CHECKPOINT_RESTORE" = 40),
// indexed by number.
std::span<const std::string_view> CapabilityNames();
std::optional<int> CapabilityNumber(std::string_view name);

// "RLIMIT_CPU" = 0 ... "RLIMIT_RTTIME" = 15, indexed by number.
std::span<const std::string_view> RlimitNames();
std::optional<int> RlimitNumber(std::string_view name);

// Namespace types of the spec: pid network mount ipc uts user cgroup time.
bool IsNamespaceType(std::string_view type);

// SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP,
// SCMP_ACT_ERRNO, SCMP_ACT_TRACE, SCMP_ACT_ALLOW, SCMP_ACT_LOG, SCMP_ACT_NOTIFY.
bool IsSeccompAction(std::string_view action);
// SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT, _MASKED_EQ.
bool IsSeccompOperator(std::string_view op);
// SCMP_ARCH_* known to libseccomp 2.5.
bool IsSeccompArch(std::string_view arch);
// SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW, _WAIT_KILLABLE_RECV.
bool IsSeccompFlag(std::string_view flag);

// "", shared, slave, private, unbindable and their r* forms.
bool IsRootfsPropagation(std::string_view p);

}  // namespace cask::oci
