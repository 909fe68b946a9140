// The default seccomp profile: what a container gets when its spec has no
// linux.seccomp and the configuration asks for one (runtime.default_seccomp).
//
// Modelled on containerd's and Docker's default profile: an allow-list of
// the syscalls ordinary programs use, the default action ERRNO(EPERM), and
// more syscalls allowed when the process's bounding set holds the
// capability that guards them (CAP_SYS_ADMIN: mount, unshare, setns, clone
// with namespace flags...; CAP_SYS_PTRACE: ptrace...; and so on). Without
// CAP_SYS_ADMIN, clone may not create namespaces and clone3 fails with
// ENOSYS (so that libc falls back to clone, whose flags can be checked).
// Syscalls that stay refused for everyone include keyctl, add_key,
// request_key, userfaultfd, kexec_*, the new mount API without
// CAP_SYS_ADMIN, and io_uring.
//
// Pure data, no syscalls: lib/container compiles it like any spec profile.
#pragma once

#include "lib/oci/spec.h"

namespace cask::oci {

// The profile for `spec`'s process (its bounding capabilities choose the
// conditional parts); architectures are the build's native ones.
Seccomp DefaultSeccompProfile(const Spec& spec);

// True if the spec's device rules allow every device, which is how
// containerd and CRI mark a privileged container.
bool IsPrivileged(const Spec& spec);

// Sets linux.seccomp to DefaultSeccompProfile(spec) when `enabled`, the
// spec has a process, no linux.seccomp of its own, and is not privileged.
// Returns whether it did.
bool ApplyDefaultSeccomp(Spec& spec, bool enabled);

}  // namespace cask::oci
