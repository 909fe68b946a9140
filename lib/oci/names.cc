#include "lib/oci/names.h"

#include <algorithm>
#include <array>

namespace cask::oci {
namespace {

// Index = capability number (include/uapi/linux/capability.h, Linux 6.1).
constexpr std::array<std::string_view, 41> kCapabilities = {
    "CAP_CHOWN",            "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID",           "CAP_KILL",           "CAP_SETGID",          "CAP_SETUID",
    "CAP_SETPCAP",          "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",        "CAP_NET_RAW",        "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",       "CAP_SYS_RAWIO",      "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",        "CAP_SYS_ADMIN",      "CAP_SYS_BOOT",        "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",     "CAP_SYS_TIME",       "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
    "CAP_LEASE",            "CAP_AUDIT_WRITE",    "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",     "CAP_MAC_ADMIN",      "CAP_SYSLOG",          "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",    "CAP_AUDIT_READ",     "CAP_PERFMON",         "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};

// Index = resource number (include/uapi/asm-generic/resource.h).
constexpr std::array<std::string_view, 16> kRlimits = {
    "RLIMIT_CPU",     "RLIMIT_FSIZE",   "RLIMIT_DATA",  "RLIMIT_STACK",
    "RLIMIT_CORE",    "RLIMIT_RSS",     "RLIMIT_NPROC", "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK", "RLIMIT_AS",      "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE", "RLIMIT_NICE",   "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
};

constexpr std::array<std::string_view, 8> kNamespaces = {
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"};

constexpr std::array<std::string_view, 9> kSeccompActions = {
    "SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          "SCMP_ACT_NOTIFY"};

constexpr std::array<std::string_view, 7> kSeccompOperators = {
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};

constexpr std::array<std::string_view, 22> kSeccompArches = {
    "SCMP_ARCH_X86",        "SCMP_ARCH_X86_64",    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",        "SCMP_ARCH_AARCH64",   "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",     "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",   "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",      "SCMP_ARCH_PPC64LE",   "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",      "SCMP_ARCH_PARISC",    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",    "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH"};

constexpr std::array<std::string_view, 4> kSeccompFlags = {
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"};

constexpr std::array<std::string_view, 9> kPropagations = {
    "", "shared", "slave", "private", "unbindable",
    "rshared", "rslave", "rprivate", "runbindable"};

template <size_t N>
std::optional<int> IndexOf(const std::array<std::string_view, N>& table, std::string_view name) {
  auto it = std::find(table.begin(), table.end(), name);
  if (it == table.end()) return std::nullopt;
  return static_cast<int>(it - table.begin());
}

template <size_t N>
bool Contains(const std::array<std::string_view, N>& table, std::string_view name) {
  return IndexOf(table, name).has_value();
}

}  // namespace

std::span<const std::string_view> CapabilityNames() { return kCapabilities; }
std::optional<int> CapabilityNumber(std::string_view name) { return IndexOf(kCapabilities, name); }
std::span<const std::string_view> RlimitNames() { return kRlimits; }
std::optional<int> RlimitNumber(std::string_view name) { return IndexOf(kRlimits, name); }
bool IsNamespaceType(std::string_view type) { return Contains(kNamespaces, type); }
bool IsSeccompAction(std::string_view action) { return Contains(kSeccompActions, action); }
bool IsSeccompOperator(std::string_view op) { return Contains(kSeccompOperators, op); }
bool IsSeccompArch(std::string_view arch) { return Contains(kSeccompArches, arch); }
bool IsSeccompFlag(std::string_view flag) { return Contains(kSeccompFlags, flag); }
bool IsRootfsPropagation(std::string_view p) { return Contains(kPropagations, p); }

}  // namespace cask::oci
