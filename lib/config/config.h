// cask's configuration: /etc/cask/configuration.toml -> an immutable Config.
//
// The file is read once, in main(), and the resulting value is passed to
// whoever needs it (sandbox, shim, runtime); nothing here keeps state. Every
// key is documented in docs/configuration.md; config/configuration.toml is
// the installed default file.
//
// Strictness: an unknown table or key, a value of the wrong type, an
// out-of-range number, an unknown enum word or a relative path is an
// INVALID_ARGUMENT naming the file and the key, e.g.
//   "/etc/cask/configuration.toml: hypervisor.memory_mib: must be between 64 and 65536, got 12".
// A TOML syntax error names the line and column. Absent keys keep their
// defaults (below), so an empty file is the built-in configuration.
//
// Thread safety: all functions are pure or only read files; Config is a
// plain value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/base/result.h"

namespace cask::config {

inline constexpr const char* kDefaultPath = "/etc/cask/configuration.toml";

enum class Accel { kAuto, kKvm, kTcg };
enum class AgentChannel { kAuto, kVsock, kSerial };

// Measured (docs/SPECIFICATION.md, bench/footprint.sh, same rounds):
// booting the lean kernel translates about 42 MiB of code, and QEMU keeps
// every page of the cache it has filled, so the bound is what an idle pod
// pays. Idle pod PSS / time until the pod answers exec: 154 MiB / 2.7 s
// at 64, 143 MiB / 2.4 s at 32, 124 MiB / 3.7 s at 16; at 16 the agent and
// busybox no longer fit and every container create/exec/delete takes ~45 %
// longer. 32 keeps start and lifecycle times as at 64; 16 is the setting
// for density (docs/configuration.md). Ignored under KVM.
inline constexpr uint32_t kDefaultTcgTbSizeMib = 32;

struct HypervisorConfig {
  std::string path = "/usr/bin/qemu-system-x86_64";
  std::string kernel = "/usr/share/cask/vmlinux";
  std::string initrd = "/usr/share/cask/initrd.img";
  std::string machine_type = "microvm";   // microvm | q35 | pc
  Accel accel = Accel::kAuto;
  uint32_t vcpus = 1;                     // 1..64
  uint32_t memory_mib = 256;              // 64..65536
  // Bounds of a pod's VM size once its limits and io.cask.* annotations
  // are counted (lib/sandbox/vm_settings.h SizePodVm); at least vcpus /
  // memory_mib (checked by Parse).
  uint32_t max_vcpus = 8;                 // 1..64
  uint32_t max_memory_mib = 8192;         // 64..65536
  std::string kernel_params;              // appended to the kernel command line
  std::string virtiofsd_path = "/usr/lib/qemu/virtiofsd";
  std::string virtiofs_cache = "auto";    // auto | always | none
  // TCG only: QEMU's translation block cache (-accel tcg,tb-size=N), MiB;
  // 0 keeps QEMU's default (a 1 GiB reservation, touched as code is
  // translated). Ignored under KVM.
  uint32_t tcg_tb_size_mib = kDefaultTcgTbSizeMib;
  // A virtio-balloon with free page reporting: memory the guest frees goes
  // back to the host.
  bool free_page_reporting = true;
  // Once the agent answers, QEMU's pages of the kernel image and initrd
  // (copied into guest RAM at boot, never read again: QEMU runs with
  // -no-reboot) are given back to the host (lib/hypervisor/boot_files.h).
  bool release_boot_files = true;
  // QEMU's user after start-up (-runas): "auto" (nobody if it exists, else
  // root), "none" (stay root), a user name, or "<uid>:<gid>".
  std::string runas = "auto";

  bool operator==(const HypervisorConfig&) const = default;
};

struct AgentConfig {
  AgentChannel channel = AgentChannel::kAuto;
  uint32_t connect_timeout_ms = 60000;    // boot + agent ready under TCG can take seconds
  // How long a teardown (kill, delete, shutdown) waits for the agent before
  // the host destroys the VM without it.
  uint32_t teardown_timeout_ms = 10000;

  bool operator==(const AgentConfig&) const = default;
};

struct RuntimeConfig {
  bool debug = false;                     // guest console log kept, agent debug logs
  std::string state_dir = "/run/cask";
  // The pod's host cgroup (QEMU, virtiofsd, optionally the shim).
  bool sandbox_cgroup = true;
  std::string cgroup_parent = "cask";     // relative: below the shim's own cgroup; "/x": from the root
  bool cgroup_shim = false;               // the shim joins its pod's cgroup too
  uint32_t cgroup_memory_overhead_mib = 512;  // limit = memory_mib + this; 0: no memory limit
  uint32_t cgroup_pids_max = 1024;        // 0: no limit
  // A spec without linux.seccomp gets the default profile
  // (lib/oci/default_seccomp.h), unless the container is privileged.
  bool default_seccomp = true;

  bool operator==(const RuntimeConfig&) const = default;
};

// The pool of ready VMs (lib/pool, `cask-runtime pool serve`): VMs booted
// ahead of time that a shim takes instead of booting one.
struct PoolConfig {
  // The shim asks the pool (when its socket answers) before booting a VM
  // cold; false: always cold.
  bool enabled = true;
  uint32_t size = 1;                           // ready VMs kept (0..64)
  std::string socket = "/run/cask-pool/pool.sock";
  // The pool's VM directories; a taken VM's directory is renamed into
  // runtime.state_dir, so both must be on one filesystem.
  std::string state_dir = "/run/cask-pool";
  // Relative: below the pool's own cgroup; "/x": from the root. Idle VMs
  // live here, one cgroup each.
  std::string cgroup_parent = "cask-pool";
  // Cap on the guest memory of idle VMs (size * memory_mib), MiB; 0: none.
  uint32_t idle_memory_mib = 0;
  // The shim starts `cask-runtime pool serve` (detached) when the socket
  // is absent.
  bool autostart = false;
  std::string runtime_path = "/usr/bin/cask-runtime";  // started by autostart

  bool operator==(const PoolConfig&) const = default;
};
inline constexpr uint32_t kMaxPoolSize = 64;

struct Config {
  HypervisorConfig hypervisor;
  AgentConfig agent;
  RuntimeConfig runtime;
  PoolConfig pool;
  std::string source;                     // file it came from, or "(built-in defaults)"

  bool operator==(const Config&) const = default;
};

// Bounds checked by Parse.
inline constexpr uint32_t kMinVcpus = 1, kMaxVcpus = 64;
inline constexpr uint32_t kMaxTcgTbSizeMib = 4096;
inline constexpr uint32_t kMinMemoryMib = 64, kMaxMemoryMib = 65536;
inline constexpr uint32_t kMaxCgroupOverheadMib = 65536, kMaxCgroupPids = 4194304;
inline constexpr uint32_t kMinConnectTimeoutMs = 100, kMaxConnectTimeoutMs = 3600000;
inline constexpr uint32_t kMinTeardownTimeoutMs = 100, kMaxTeardownTimeoutMs = 600000;

// Parses TOML text. Unknown tables/keys and bad values are INVALID_ARGUMENT
// naming the key and the file: "<origin>: hypervisor.memory_mib: must be between 64 and 65536, got 12".
// The result's `source` is `origin`.
Result<Config> Parse(std::string_view toml, const std::string& origin);
// Reads and parses a file; a missing file is NOT_FOUND naming the path.
Result<Config> LoadFile(const std::string& path);
// kDefaultPath if it exists, else built-in defaults (source = "(built-in defaults)").
Result<Config> LoadDefault();
// The effective configuration as TOML (for `cask-runtime env`): every key,
// preceded by a comment naming `source`. Parse(ToToml(c), c.source) == c.
std::string ToToml(const Config& c);
// "auto", "kvm", "tcg" / "auto", "vsock", "serial": the words used in the file.
std::string_view AccelName(Accel);
std::string_view ChannelName(AgentChannel);

}  // namespace cask::config
