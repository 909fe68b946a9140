// Spawning container processes, blocked before execve (PendingProcess).
//
// Every container process is made by the same two-step fork:
//
//   agent ──fork──> intermediate: joins the cgroup and namespaces (setns),
//                   unshares the new ones (a new pid namespace applies only
//                   to children), forks, reports the child's pid, exits.
//                └──fork──> final process: stdio pipes, container-specific
//                   setup (rootfs for an init), the terminal if any (opened
//                   in the container, master sent to the agent), rlimits,
//                   user, capabilities,
//                   no_new_privs, seccomp; reports READY; blocks on the start
//                   channel; execve.
//
// The final process is reparented to the agent (PID 1) when the intermediate
// exits. Nothing here waits for either process: they talk to the agent only
// through a SOCK_SEQPACKET "sync" socket (pid, READY, or the failing step as
// text), the start channel and a close-on-exec exec-error pipe.
//
// The agent is multi-threaded; fork() (not clone()) is used so that glibc's
// malloc stays usable in the children. The children close every fd they did
// not receive explicitly, so fds of concurrent Creates never leak across.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/container/capabilities.h"
#include "lib/container/container.h"
#include "lib/container/namespaces.h"
#include "lib/container/seccomp.h"
#include "lib/oci/spec.h"

namespace cask::container {

// Everything about the process itself, resolved before fork.
struct ProcessPlan {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::vector<std::string> exec_paths;  // candidates for args[0] (PATH lookup)
  std::string cwd;
  oci::User user;
  std::optional<CapabilitySets> caps;
  int last_cap = 0;
  std::vector<std::pair<int, rlimit>> rlimits;
  std::optional<int> oom_score_adj;
  bool no_new_privileges = false;
  SeccompProgram seccomp;
};

// Validates and resolves `proc` (args, cwd, capability and rlimit names) and
// compiles `seccomp` if given.
Result<ProcessPlan> PlanProcess(const oci::Process& proc, const std::optional<oci::Seccomp>& seccomp);

// Exec candidates for `file`, like execvpe: itself if it has a '/', else
// each directory of the env's PATH (default
// /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) joined with it.
std::vector<std::string> ExecCandidates(const std::string& file, const std::vector<std::string>& env);

// Whether `file` can be executed through one of `candidates` (as
// ExecCandidates made them), seen from the calling process: its root, cwd,
// mounts and credentials. Run by the container's process after it took on
// its user, root and cwd and before it reports ready, so that a missing
// program fails Create (or ExecProcess), not Start. FAILED_PRECONDITION
// with the exec-failure marker (lib/base/error.h): kNotFound when no
// candidate exists, kPermissionDenied when one exists but is a directory
// or not executable.
Status CheckExecutable(const std::string& file, const std::vector<std::string>& candidates);

// The child ends of a process's stdio.
//
// With a terminal nothing is opened here: like runc, the final process
// opens the pty in the container's own /dev/ptmx (its devpts instance) once
// it is in the container's mount namespace and root, so that tty(1) names a
// /dev/pts device the container can see. It makes the slave its
// controlling terminal and stdio, and sends the master to the agent over
// the sync socket (SCM_RIGHTS); SpawnPending stores it in
// SpawnRequest::pty_master_out.
struct ChildStdio {
  UniqueFd in, out, err;  // without a terminal
  bool terminal = false;
  std::optional<oci::ConsoleSize> console_size;  // applied to the new pty
};

// Makes pipes, or records that a terminal is wanted; fills `io` with the
// agent's pipe ends (the pty master comes from SpawnPending).
Result<ChildStdio> MakeStdio(bool terminal, const std::optional<oci::ConsoleSize>& size,
                             bool open_stdin, ProcessIo* io);

struct SpawnRequest {
  const ProcessPlan* process = nullptr;
  ChildStdio stdio;
  int cgroup_procs_fd = -1;  // the intermediate writes itself into it
  std::vector<NamespaceJoin> joins;
  int unshare_flags = 0;
  bool new_user = false;
  std::string uid_map, gid_map;
  // Runs in the final process after stdio and before the process settings;
  // for an init it builds the rootfs. May be empty.
  std::function<Status()> setup;
  std::string what;  // "container init", "exec" (error context)
  // With stdio.terminal: where the pty master received from the child goes
  // (required then), and whether the slave is bound over /dev/console (the
  // init, as runc; not an exec).
  UniqueFd* pty_master_out = nullptr;
  bool bind_console = false;
};

// Forks as described above and returns the pending final process, or the
// error of the step that failed (the child is killed then).
Result<PendingProcess> SpawnPending(SpawnRequest req);

}  // namespace cask::container
