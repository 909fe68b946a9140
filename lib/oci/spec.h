// The OCI runtime-spec model (config.json, runtime-spec 1.0.x/1.1), as far as
// cask uses it. Pure data: no syscalls. Parsing and validation live in
// parse.h; the rest of cask works only with these types, never with JSON.
//
// Field names follow the spec's JSON names in snake_case. Optional JSON
// fields are std::optional when "absent" differs from the zero value.
// Every type compares with == (member-wise), which tests use to check
// that ToJson/Parse round-trips.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cask::oci {

struct User {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::optional<uint32_t> umask;
  std::vector<uint32_t> additional_gids;

  bool operator==(const User&) const = default;
};

struct ConsoleSize {
  uint32_t height = 0;
  uint32_t width = 0;

  bool operator==(const ConsoleSize&) const = default;
};

struct Capabilities {
  // Capability names as in the spec ("CAP_CHOWN", ...).
  std::vector<std::string> bounding, effective, inheritable, permitted, ambient;

  bool operator==(const Capabilities&) const = default;
};

struct Rlimit {
  std::string type;  // "RLIMIT_NOFILE", ...
  uint64_t hard = 0;
  uint64_t soft = 0;

  bool operator==(const Rlimit&) const = default;
};

struct Process {
  bool terminal = false;
  std::optional<ConsoleSize> console_size;
  User user;
  std::vector<std::string> args;
  std::vector<std::string> env;  // "KEY=value"
  std::string cwd = "/";
  std::optional<Capabilities> capabilities;
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  std::optional<int> oom_score_adj;
  std::string apparmor_profile;
  std::string selinux_label;

  bool operator==(const Process&) const = default;
};

struct Root {
  std::string path;
  bool readonly = false;

  bool operator==(const Root&) const = default;
};

struct Mount {
  std::string destination;
  std::string type;
  std::string source;
  std::vector<std::string> options;

  bool operator==(const Mount&) const = default;
};

struct Namespace {
  std::string type;  // pid, network, mount, ipc, uts, user, cgroup, time
  std::string path;  // join an existing namespace when set

  bool operator==(const Namespace&) const = default;
};

struct IdMapping {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t size = 0;

  bool operator==(const IdMapping&) const = default;
};

struct DeviceCgroup {
  bool allow = false;
  std::string type;  // "a", "c", "b" or empty
  std::optional<int64_t> major, minor;
  std::string access;

  bool operator==(const DeviceCgroup&) const = default;
};

struct MemoryResources {
  std::optional<int64_t> limit;
  std::optional<int64_t> reservation;
  std::optional<int64_t> swap;
  std::optional<int64_t> kernel;
  std::optional<int64_t> kernel_tcp;
  std::optional<uint64_t> swappiness;
  std::optional<bool> disable_oom_killer;

  bool operator==(const MemoryResources&) const = default;
};

struct CpuResources {
  std::optional<uint64_t> shares;
  std::optional<int64_t> quota;
  std::optional<uint64_t> period;
  std::optional<int64_t> realtime_runtime;
  std::optional<uint64_t> realtime_period;
  std::string cpus;
  std::string mems;

  bool operator==(const CpuResources&) const = default;
};

struct PidsResources {
  int64_t limit = 0;  // <= 0: unlimited

  bool operator==(const PidsResources&) const = default;
};

struct BlockIoResources {
  std::optional<uint16_t> weight;

  bool operator==(const BlockIoResources&) const = default;
};

struct HugepageLimit {
  std::string page_size;
  uint64_t limit = 0;

  bool operator==(const HugepageLimit&) const = default;
};

struct LinuxResources {
  std::vector<DeviceCgroup> devices;
  std::optional<MemoryResources> memory;
  std::optional<CpuResources> cpu;
  std::optional<PidsResources> pids;
  std::optional<BlockIoResources> block_io;
  std::vector<HugepageLimit> hugepage_limits;
  std::map<std::string, std::string> unified;  // cgroup v2 key -> value

  bool operator==(const LinuxResources&) const = default;
};

struct SeccompArg {
  uint32_t index = 0;
  uint64_t value = 0;
  uint64_t value_two = 0;
  std::string op;  // SCMP_CMP_EQ, ...

  bool operator==(const SeccompArg&) const = default;
};

struct SeccompSyscall {
  std::vector<std::string> names;
  std::string action;  // SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, ...
  std::optional<uint32_t> errno_ret;
  std::vector<SeccompArg> args;

  bool operator==(const SeccompSyscall&) const = default;
};

struct Seccomp {
  std::string default_action;
  std::optional<uint32_t> default_errno_ret;
  std::vector<std::string> architectures;  // SCMP_ARCH_X86_64, ...
  std::vector<std::string> flags;
  std::vector<SeccompSyscall> syscalls;

  bool operator==(const Seccomp&) const = default;
};

struct Device {
  std::string path;
  std::string type;  // c, b, u, p
  int64_t major = 0, minor = 0;
  std::optional<uint32_t> file_mode;
  std::optional<uint32_t> uid, gid;

  bool operator==(const Device&) const = default;
};

struct Linux {
  std::vector<Namespace> namespaces;
  std::vector<IdMapping> uid_mappings, gid_mappings;
  std::optional<LinuxResources> resources;
  std::string cgroups_path;
  std::map<std::string, std::string> sysctl;
  std::optional<Seccomp> seccomp;
  std::vector<Device> devices;
  std::vector<std::string> masked_paths;
  std::vector<std::string> readonly_paths;
  std::string rootfs_propagation;
  std::string mount_label;

  bool operator==(const Linux&) const = default;
};

struct Spec {
  std::string oci_version;
  std::optional<Process> process;  // required to start, absent in some bundles
  std::optional<Root> root;
  std::string hostname;
  std::string domainname;
  std::vector<Mount> mounts;
  std::optional<Linux> linux;
  std::map<std::string, std::string> annotations;

  bool operator==(const Spec&) const = default;
};

}  // namespace cask::oci
