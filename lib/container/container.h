// Guest-side containers, built from an OCI spec without runc.
//
// Runs inside the pod VM (as PID 1's library). A Container owns its cgroup
// directory and mount namespace. Its processes are made by a short-lived
// intermediate child of the caller (see process.h) and are reparented to
// PID 1, i.e. the agent (a caller that is not PID 1, like a test, must be a
// child subreaper, PR_SET_CHILD_SUBREAPER, to reap them).
//
// Process ownership contract: this library NEVER waits for a container
// process. The caller runs the one reaper of the guest (it is PID 1) and
// collects exit statuses by pid. To make that race-free every process is
// returned *pending*: it exists and is blocked before execve until Start()
// is called, so the caller can register its pid with the reaper first.
// Intermediate helper processes (used to enter the namespaces) are direct
// children of the caller that exit on their own within the call; the
// caller's reaper reaps them like any pid it does not know. Their exit
// status carries no information (everything is reported over pipes).
//
// Thread safety: a Container is not internally synchronised; the agent
// serialises calls per container.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/container/namespaces.h"
#include "lib/oci/spec.h"
#include "lib/sys/cgroup_stats.h"
#include "lib/sys/pidfd.h"

namespace cask::container {

// The host ends of a process's stdio. With a terminal only `pty_master` is
// set (it carries stdin and stdout; stderr is merged). Without one, stdin_w
// is set only when stdin was requested (else the process gets /dev/null).
struct ProcessIo {
  UniqueFd stdin_w;
  UniqueFd stdout_r;
  UniqueFd stderr_r;
  UniqueFd pty_master;
};

// A process created but blocked before execve.
class PendingProcess {
 public:
  PendingProcess() = default;
  PendingProcess(pid_t pid, UniqueFd start_w, UniqueFd exec_err_r);
  PendingProcess(PendingProcess&&) noexcept = default;
  PendingProcess& operator=(PendingProcess&&) noexcept = default;
  // Destroying an unstarted process kills it (SIGKILL; the caller's reaper
  // reaps it).
  ~PendingProcess();

  pid_t pid() const { return pid_; }
  // Lets the process execve and waits until it has: returns the pid, or the
  // exec error (e.g. NOT_FOUND "exec: foo: No such file or directory"; the
  // process then exits with status 127). With no_new_privileges the
  // seccomp filter is loaded here, just before execve; its failure is
  // reported the same way.
  Result<pid_t> Start();

 private:
  pid_t pid_ = -1;
  UniqueFd start_w_;
  UniqueFd exec_err_r_;
};

struct CreateOptions {
  std::string id;
  oci::Spec spec;          // validated by the caller (oci::ParseSpec)
  std::string rootfs;      // guest path of the root filesystem
  bool open_stdin = false;
  // Parent of container cgroups (cgroup2 mount + "/cask"); each container
  // gets <cgroup_root>/<id>. Must be on a cgroup2 file system. Empty: the
  // container gets no cgroup at all (hosts without cgroup v2, tests): spec
  // resources are then not applied, Pids/Pause/Resume/Update/Stats fail
  // with FAILED_PRECONDITION, and KillAll/Destroy signal only the init
  // process (which ends a container with its own pid namespace).
  std::string cgroup_root = "/sys/fs/cgroup/cask";
  // Enter the rootfs with MS_MOVE + chroot instead of pivot_root (like
  // runc --no-pivot). Also the automatic fallback when pivot_root fails
  // with EINVAL, which it does when the agent's root is the initramfs
  // itself; a chroot is weaker than pivot_root, so the agent should rather
  // switch_root to a tmpfs at boot.
  bool no_pivot = false;
  // Maps the spec's namespace paths (host paths) to guest namespaces; see
  // NamespaceResolver. Empty: a spec namespace path is refused.
  NamespaceResolver resolve_namespace;
};

class Container {
 public:
  // Validates what only the guest can check (rootfs exists, ...), creates
  // the cgroup with the spec's limits, and a pending init process in new
  // mount, pid, uts and ipc namespaces (as the spec asks) with the rootfs
  // pivoted, the spec's mounts, masked and read-only paths, hostname, rlimits,
  // user, capabilities, no_new_privs and seccomp applied. A failure unwinds
  // everything it made.
  //
  // In the init, in this order: setsid and stdio pipes (no terminal);
  // "/" made rslave (or private); rootfs bind-mounted onto itself; spec
  // mounts in order (destinations resolved inside the rootfs); spec devices
  // (mknod); if /dev is a tmpfs: null zero full random urandom tty bound
  // from the guest, fd/stdin/stdout/stderr/ptmx links; hostname;
  // pivot_root; sysctl; read-only paths; masked paths; read-only "/"; with
  // a terminal: a pty from the container's /dev/ptmx (its devpts), its
  // slave bound over /dev/console, made the controlling tty and stdio, the
  // master sent to the caller (ProcessIo::pty_master); rlimits; seccomp if !no_new_privileges; bounding set; groups, gid,
  // uid; capabilities; umask; no_new_privs; chdir(cwd); READY; wait for
  // Start(); seccomp if no_new_privileges; execve (PATH of the spec's env).
  // A failing step fails Create with its name, e.g. "container init: mount
  // proc on /proc: No such device". With a cgroup, the device rules
  // (linux.resources.devices, plus linux.devices and the default devices:
  // see device_filter.h) are enforced by a BPF_CGROUP_DEVICE program
  // attached before the init joins the cgroup. Not supported: hooks,
  // AppArmor/SELinux labels, idmapped and tmpcopyup mounts.
  static Result<std::unique_ptr<Container>> Create(CreateOptions opts, ProcessIo* io_out,
                                                   PendingProcess* init_out);
  ~Container();  // Destroy() if not done.

  const std::string& id() const { return id_; }
  pid_t init_pid() const { return init_pid_; }
  const std::string& cgroup_path() const { return cgroup_path_; }

  // A pending process that joins every namespace of the init process and
  // its cgroup, with `proc`'s args, env, cwd, user, capabilities, rlimits,
  // no_new_privs, and the container's seccomp profile. Capabilities,
  // rlimits and oom_score_adj that `proc` leaves out are the container
  // process's (as runc); the container's no_new_privs always applies.
  // Needs a live init.
  Result<PendingProcess> Exec(const oci::Process& proc, bool open_stdin, ProcessIo* io_out);

  // Every pid in the container's cgroup (cgroup.procs).
  Result<std::vector<pid_t>> Pids() const;
  Status KillAll(int sig) const;
  Status Pause() const;   // cgroup.freeze = 1 and waits until frozen
  Status Resume() const;  // cgroup.freeze = 0
  // Applies `r`; device rules in `r` replace the device program (the new
  // one is attached before the old one is detached, so no access is
  // allowed in between that neither allows).
  Status Update(const oci::LinuxResources& r);
  Result<sys::CgroupStats> Stats() const;
  // Path of memory.events, for OOM watching (inotify IN_MODIFY).
  std::string memory_events_path() const;

  // SIGKILLs every process, waits (bounded, ~2 s) for the cgroup to empty,
  // removes the cgroup. Create mounts nothing outside the container's own
  // mount namespace, which ends with its last process. Idempotent.
  Status Destroy();

 private:
  Container() = default;
  Status SignalInit(int sig) const;
  std::string id_;
  pid_t init_pid_ = -1;
  sys::Pidfd init_pidfd_;  // signals reach the init even after its pid is reused
  std::string cgroup_path_;
  UniqueFd device_prog_;  // the attached device program (replaced by Update)
  oci::Spec spec_;
  bool destroyed_ = false;
};

// Sets the window size of a pty master.
Status ResizePty(int pty_master, uint32_t rows, uint32_t cols);

}  // namespace cask::container
