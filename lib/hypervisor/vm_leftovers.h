// What a VM's host processes are, written down in its state directory
// (<state_dir>/host-processes) while it runs, so that whoever cleans up
// after a dead owner (the shim's `delete`, cask-runtime's watchdog) finds
// them by identity -- the pod's cgroup and pid + start time -- and never by
// matching names or command lines (an operator's `tail -f` of the console
// log mentions the VM's directory too, and must survive the cleanup).
//
// The file is written by the Vm (qemu.cc) once its processes run and
// removed by Vm::Stop. It is plain text, one item a line:
//   vmm <pid> <start time>
//   virtiofsd <pid> <start time>
//   cgroup <absolute directory>
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/hypervisor/process_identity.h"

namespace cask::hypervisor {

inline constexpr char kHostProcessesFile[] = "host-processes";
// The file is ours (root-only state dir), but a bound keeps a corrupted one
// from growing a reader's memory.
inline constexpr size_t kMaxHostProcessesBytes = 64 * 1024;

struct HostProcesses {
  std::optional<ProcessIdentity> vmm;
  std::optional<ProcessIdentity> virtiofsd;
  std::vector<std::string> cgroup_dirs;
  bool operator==(const HostProcesses&) const = default;
};

std::string FormatHostProcesses(const HostProcesses& p);
// INVALID_ARGUMENT for an unknown line, a bad number or a relative path.
Result<HostProcesses> ParseHostProcesses(std::string_view text);

Status WriteHostProcesses(const std::string& state_dir, const HostProcesses& p);
// NOT_FOUND when the state dir has no such file.
Result<HostProcesses> ReadHostProcesses(const std::string& state_dir);

// Kills what the VM of `state_dir` left running: every member of its
// cgroup, then each recorded process whose pid still names the recorded
// process (through a pidfd); waits up to `timeout` for them to exit. A
// state dir without a record is fine (nothing was started, or it was
// stopped cleanly). Removes the cgroup directories. Touches no process
// that is not in the record or the cgroup.
Status KillVmLeftovers(const std::string& state_dir, std::chrono::milliseconds timeout);

}  // namespace cask::hypervisor
