// Parsing, validation and generation of OCI runtime-spec JSON.
//
// Parse* never perform side effects and accept untrusted input of any size
// (there is a fuzz target): every error is an INVALID_ARGUMENT naming the
// JSON path of the offending field, e.g.
//   "process.args: must be a non-empty array of strings".
// Unknown fields are ignored, as runc does; a JSON null is the same as an
// absent field (Go's encoding/json, which wrote most specs, does the same).
// Documents nested deeper than 64 levels are rejected before being parsed
// (a real spec nests at most 6 deep).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/oci/spec.h"

namespace cask::oci {

// Parses config.json. Also runs Validate().
Result<Spec> ParseSpec(std::string_view json);
// An OCI "process" object (exec spec from containerd, agent ExecProcess).
// Also runs ValidateProcess(); error paths start with "process".
Result<Process> ParseProcess(std::string_view json);
// An OCI "linux.resources" object (containerd Update). Also runs
// ValidateLinuxResources(); error paths start with "resources".
Result<LinuxResources> ParseLinuxResources(std::string_view json);

// Semantic checks before any side effect: ociVersion 1.x, process.args
// non-empty and process.cwd absolute when process is present, mount
// destinations absolute, known namespace types without duplicates, known
// capability and rlimit names, known seccomp actions/operators, memory limit
// positive, cpu quota/period sane.
Status Validate(const Spec& spec);
// `path_prefix` is the JSON path of the object in error messages, e.g.
// "process" gives "process.cwd: must be an absolute path, got \"tmp\"".
Status ValidateProcess(const Process& p, std::string_view path_prefix);
Status ValidateLinuxResources(const LinuxResources& r, std::string_view path_prefix);

// Serialises back to JSON (round-trips everything in the model): fields in
// the spec's order, tab-indented, empty/absent fields omitted as runc does.
// Never fails; invalid UTF-8 in strings is replaced by U+FFFD.
std::string ToJson(const Spec& spec);
std::string ToJson(const Process& p);
std::string ToJson(const LinuxResources& r);

// The spec `runc spec` generates (rootless=false), with `args` as
// process.args, `terminal` as process.terminal and root.path = "rootfs":
// pid/ipc/uts/mount/network namespaces, the default mounts (proc, /dev
// tmpfs, devpts, shm, mqueue, sysfs, cgroup), the default capability set,
// RLIMIT_NOFILE 1024, masked and read-only paths, no_new_privileges.
Spec DefaultSpec(const std::vector<std::string>& args, bool terminal);

}  // namespace cask::oci
