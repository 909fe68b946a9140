// Process identity: a pid plus its start time, so that a recorded pid is
// only ever signalled while it still names the process that was recorded
// (pids are reused). Used for the VM's host processes and the shim in the
// records that the dead-shim cleanup reads back.
//
// Identity is checked through a pidfd: the pidfd is opened first, then
// /proc/<pid>/stat is read; if the start time matches, the pidfd refers to
// the recorded process (a reused pid would have a later start time), and
// the signal goes through the pidfd, so it cannot reach a process that
// took the pid meanwhile.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/sys/pidfd.h"

namespace cask::hypervisor {

struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22: clock ticks after boot
  bool operator==(const ProcessIdentity&) const = default;
};

// The fields of /proc/<pid>/stat that identity and liveness need.
struct ProcStat {
  char state = '?';         // field 3: R, S, D, Z (zombie), X (dead), ...
  uint64_t flags = 0;       // field 9: PF_* flags
  uint64_t start_time = 0;  // field 22
};
// PF_EXITING: set at the start of the kernel's exit path, before the
// process's files (its sockets) are closed.
inline constexpr uint64_t kPfExiting = 0x4;

// Parses the text of /proc/<pid>/stat (the command name in field 2 may
// hold spaces and parentheses: fields are counted after the last ')').
Result<ProcStat> ParseProcStat(std::string_view text);
// NOT_FOUND if there is no such process.
Result<ProcStat> ReadProcStat(pid_t pid);
Result<ProcessIdentity> IdentityOf(pid_t pid);

// A pidfd of the process `id` names, if that process still exists (a
// zombie counts); NOT_FOUND if the pid is gone or now names another
// process.
Result<sys::Pidfd> OpenIdentified(const ProcessIdentity& id);

enum class Liveness {
  kGone,     // no such process (or the pid names another one now)
  kExiting,  // being killed or exited (zombie): its sockets are closing or closed
  kRunning,
};
Liveness CheckLiveness(const ProcessIdentity& id);

// Waits until `id` is gone or a zombie, up to `timeout`; true if so.
bool WaitExited(const ProcessIdentity& id, std::chrono::milliseconds timeout);

// Sends `sig` to `id` through a verified pidfd. NOT_FOUND if it is gone
// or the pid names another process (nothing is signalled then).
Status SignalIdentified(const ProcessIdentity& id, int sig);

}  // namespace cask::hypervisor
