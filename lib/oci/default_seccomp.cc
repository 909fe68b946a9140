#include "lib/oci/default_seccomp.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string_view>

namespace cask::oci {
namespace {

// Allowed for every container.
constexpr std::string_view kAllowed[] = {
    "accept", "accept4", "access", "alarm", "bind", "brk", "cachestat", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
    "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64",
    "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue",
    "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt",
    "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl",
    "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
    "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link",
    "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr",
    "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "mincore",
    "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
    "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget",
    "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
    "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socket", "socketcall", "socketpair",
    "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask",
    "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork",
    "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
};

// Allowed when the bounding set holds the capability.
struct CapSyscalls {
  std::string_view cap;
  std::vector<std::string_view> names;
};

const std::vector<CapSyscalls>& CapGated() {
  static const std::vector<CapSyscalls> kGated = {
      {"CAP_DAC_READ_SEARCH", {"open_by_handle_at"}},
      {"CAP_SYS_ADMIN",
       {"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
        "mount", "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
        "unshare"}},
      {"CAP_SYS_BOOT", {"reboot"}},
      {"CAP_SYS_CHROOT", {"chroot"}},
      {"CAP_SYS_MODULE", {"delete_module", "init_module", "finit_module"}},
      {"CAP_SYS_PACCT", {"acct"}},
      {"CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
                          "ptrace"}},
      {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
      {"CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex",
                        "clock_adjtime", "clock_adjtime64"}},
      {"CAP_SYS_TTY_CONFIG", {"vhangup"}},
      {"CAP_SYS_NICE", {"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
      {"CAP_SYSLOG", {"syslog"}},
      {"CAP_BPF", {"bpf"}},
      {"CAP_PERFMON", {"perf_event_open"}},
  };
  return kGated;
}

// Namespace-creating clone flags (CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC
// | NEWUSER | NEWPID | NEWNET | NEWTIME), refused to clone without
// CAP_SYS_ADMIN.
constexpr uint64_t kNamespaceFlags = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 |
                                     0x20000000 | 0x40000000 | 0x00000080;

std::vector<std::string> Architectures() {
#if defined(__x86_64__)
  return {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
#elif defined(__aarch64__)
  return {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
#else
  return {};
#endif
}

std::vector<std::string> ArchSyscalls() {
#if defined(__x86_64__)
  return {"arch_prctl", "modify_ldt"};
#elif defined(__aarch64__)
  return {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"};
#else
  return {};
#endif
}

SeccompSyscall Allow(std::vector<std::string> names) {
  SeccompSyscall s;
  s.names = std::move(names);
  s.action = "SCMP_ACT_ALLOW";
  return s;
}

}  // namespace

Seccomp DefaultSeccompProfile(const Spec& spec) {
  Seccomp p;
  p.default_action = "SCMP_ACT_ERRNO";
  p.default_errno_ret = EPERM;
  p.architectures = Architectures();
  p.syscalls.push_back(Allow({std::begin(kAllowed), std::end(kAllowed)}));
  // personality(2): only the ordinary execution domains (PER_LINUX,
  // PER_LINUX32, UNAME26 variants, and the query 0xffffffff).
  for (uint64_t persona : {0x0ull, 0x8ull, 0x20000ull, 0x20008ull, 0xffffffffull}) {
    SeccompSyscall s = Allow({"personality"});
    s.args.push_back(SeccompArg{.index = 0, .value = persona, .value_two = 0, .op = "SCMP_CMP_EQ"});
    p.syscalls.push_back(std::move(s));
  }
  p.syscalls.push_back(Allow(ArchSyscalls()));

  const std::vector<std::string> none;
  const std::vector<std::string>& bounding =
      spec.process && spec.process->capabilities ? spec.process->capabilities->bounding : none;
  auto has = [&](std::string_view cap) { return std::find(bounding.begin(), bounding.end(), cap) != bounding.end(); };
  for (const auto& g : CapGated()) {
    if (has(g.cap)) p.syscalls.push_back(Allow({g.names.begin(), g.names.end()}));
  }
  if (!has("CAP_SYS_ADMIN")) {
    // clone without namespace flags (the flags are the first argument on
    // x86_64 and arm64); clone3 passes its flags in memory, which seccomp
    // cannot read: ENOSYS makes libc fall back to clone.
    SeccompSyscall clone = Allow({"clone"});
    clone.args.push_back(
        SeccompArg{.index = 0, .value = kNamespaceFlags, .value_two = 0, .op = "SCMP_CMP_MASKED_EQ"});
    p.syscalls.push_back(std::move(clone));
    SeccompSyscall clone3;
    clone3.names = {"clone3"};
    clone3.action = "SCMP_ACT_ERRNO";
    clone3.errno_ret = ENOSYS;
    p.syscalls.push_back(std::move(clone3));
  }
  return p;
}

bool IsPrivileged(const Spec& spec) {
  if (!spec.linux || !spec.linux->resources) return false;
  bool all = false;
  // The last rule that covers every device decides.
  for (const auto& d : spec.linux->resources->devices) {
    bool every = (d.type.empty() || d.type == "a") && (!d.major || *d.major == -1) &&
                 (!d.minor || *d.minor == -1);
    bool rwm = d.access.empty() || (d.access.find('r') != std::string::npos &&
                                    d.access.find('w') != std::string::npos &&
                                    d.access.find('m') != std::string::npos);
    if (every && (!d.allow || rwm)) all = d.allow;
  }
  return all;
}

bool ApplyDefaultSeccomp(Spec& spec, bool enabled) {
  if (!enabled || !spec.process || IsPrivileged(spec)) return false;
  if (spec.linux && spec.linux->seccomp) return false;
  if (!spec.linux) spec.linux.emplace();
  spec.linux->seccomp = DefaultSeccompProfile(spec);
  return true;
}

}  // namespace cask::oci
