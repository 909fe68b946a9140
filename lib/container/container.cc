#include "lib/container/container.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "lib/base/fs.h"
#include "lib/container/cgroup.h"
#include "lib/container/device_filter.h"
#include "lib/container/mounts.h"
#include "lib/container/namespaces.h"
#include "lib/container/process.h"
#include "lib/oci/id.h"

namespace cask::container {
namespace {

constexpr auto kDestroyTimeout = std::chrono::milliseconds(2000);
constexpr auto kFreezeTimeout = std::chrono::milliseconds(5000);

Result<UniqueFd> OpenProcs(const std::string& cgroup_path) {
  if (cgroup_path.empty()) return UniqueFd();
  return Open(JoinPath(cgroup_path, "cgroup.procs"), O_WRONLY);
}

}  // namespace

Result<std::unique_ptr<Container>> Container::Create(CreateOptions opts, ProcessIo* io_out,
                                                     PendingProcess* init_out) {
  if (io_out == nullptr || init_out == nullptr) {
    return Error::InvalidArgument("Container::Create needs io_out and init_out");
  }
  CASK_TRY(oci::ValidateId("container id", opts.id));
  const oci::Spec& spec = opts.spec;
  if (!spec.process) return Error::InvalidArgument("the spec has no process");
  const oci::Linux* lx = spec.linux ? &*spec.linux : nullptr;

  // Everything that can be checked is checked before the first side effect.
  CASK_ASSIGN_OR_RETURN(RootfsPlan rootfs, PlanRootfs(spec, opts.rootfs));
  rootfs.no_pivot = opts.no_pivot;
  CASK_ASSIGN_OR_RETURN(NamespacePlan ns, PlanNamespaces(spec, opts.resolve_namespace));
  if (!(ns.unshare_flags & CLONE_NEWNS)) {
    return Error::InvalidArgument("the spec must ask for a new mount namespace");
  }
  if ((!spec.hostname.empty() || !spec.domainname.empty()) && !ns.new_uts) {
    return Error::InvalidArgument("setting the hostname needs a new uts namespace");
  }
  std::map<std::string, std::string> sysctl = lx ? lx->sysctl : std::map<std::string, std::string>{};
  CASK_TRY(ValidateSysctl(sysctl));
  CASK_ASSIGN_OR_RETURN(ProcessPlan proc,
                        PlanProcess(*spec.process, lx ? lx->seccomp : std::nullopt));
  CASK_ASSIGN_OR_RETURN(std::vector<DeviceRule> device_rules, EffectiveDeviceRules(spec));

  // From here the Container owns what is made: an early return destroys it.
  std::unique_ptr<Container> c(new Container());
  c->id_ = opts.id;
  if (!opts.cgroup_root.empty()) {
    CASK_ASSIGN_OR_RETURN(Cgroup cg, Cgroup::Create(opts.cgroup_root, opts.id));
    c->cgroup_path_ = cg.path();
    if (lx && lx->resources) CASK_TRY(cg.Apply(*lx->resources).Context("cgroup " + cg.path()));
    // Before any process joins the cgroup: the init's own mknods are checked.
    CASK_ASSIGN_OR_RETURN(c->device_prog_, ApplyDeviceRules(cg.path(), device_rules));
    rootfs.cgroup_path = cg.path();
  }
  CASK_ASSIGN_OR_RETURN(UniqueFd procs, OpenProcs(c->cgroup_path_));

  ProcessIo io;
  CASK_ASSIGN_OR_RETURN(ChildStdio stdio, MakeStdio(spec.process->terminal, spec.process->console_size,
                                                    opts.open_stdin, &io));

  SpawnRequest req;
  req.process = &proc;
  req.stdio = std::move(stdio);
  req.cgroup_procs_fd = procs.get();
  req.joins = std::move(ns.joins);
  req.unshare_flags = ns.unshare_flags;
  req.new_user = ns.new_user;
  req.uid_map = ns.uid_map;
  req.gid_map = ns.gid_map;
  req.what = "container init";
  req.pty_master_out = &io.pty_master;
  req.bind_console = true;
  req.setup = [&rootfs, &spec, &sysctl]() -> Status {
    CASK_TRY(SetupRootfs(rootfs));
    if (!spec.hostname.empty() && sethostname(spec.hostname.data(), spec.hostname.size()) != 0) {
      return Error::Sys(errno, "sethostname " + spec.hostname);
    }
    if (!spec.domainname.empty() &&
        setdomainname(spec.domainname.data(), spec.domainname.size()) != 0) {
      return Error::Sys(errno, "setdomainname " + spec.domainname);
    }
    CASK_TRY(EnterRootfs(rootfs));
    CASK_TRY(WriteSysctl(sysctl));
    CASK_TRY(RestrictPaths(rootfs));
    return FinishRootfs(rootfs);
  };
  CASK_ASSIGN_OR_RETURN(PendingProcess init, SpawnPending(std::move(req)));
  // The init is blocked on its start channel, so its pid is valid here.
  CASK_ASSIGN_OR_RETURN(c->init_pidfd_, sys::Pidfd::Open(init.pid()).Context("the container init"));
  c->init_pid_ = init.pid();
  c->spec_ = std::move(opts.spec);
  *io_out = std::move(io);
  *init_out = std::move(init);
  return c;
}

Container::~Container() { (void)Destroy(); }

Status Container::SignalInit(int sig) const {
  if (!init_pidfd_) return Error::FailedPrecondition("container " + id_ + " has no init process");
  Status st = init_pidfd_.Signal(sig);
  if (!st.ok() && st.error().sys_errno() != ESRCH) return std::move(st).Context("container " + id_);
  return Ok();
}

Result<PendingProcess> Container::Exec(const oci::Process& proc, bool open_stdin,
                                       ProcessIo* io_out) {
  if (io_out == nullptr) return Error::InvalidArgument("Container::Exec needs io_out");
  if (destroyed_ || !init_pidfd_) {
    return Error::FailedPrecondition("container " + id_ + " has no running init");
  }
  const oci::Linux* lx = spec_.linux ? &*spec_.linux : nullptr;
  // Like runc: what the exec request leaves out comes from the container's
  // process (capabilities, rlimits, oom_score_adj); no_new_privs set on the
  // container cannot be dropped by an exec.
  oci::Process effective = proc;
  if (spec_.process) {
    const oci::Process& init = *spec_.process;
    if (!effective.capabilities) effective.capabilities = init.capabilities;
    if (effective.rlimits.empty()) effective.rlimits = init.rlimits;
    if (!effective.oom_score_adj) effective.oom_score_adj = init.oom_score_adj;
    effective.no_new_privileges |= init.no_new_privileges;
  }
  CASK_ASSIGN_OR_RETURN(ProcessPlan plan, PlanProcess(effective, lx ? lx->seccomp : std::nullopt));
  auto joins = NamespacesOf(init_pid_);
  // The namespaces were read through the pid: make sure it was still our
  // init (a reaped and reused pid fails the pidfd check).
  bool alive = init_pidfd_.Signal(0).ok();
  if (!joins.ok() || !alive) {
    Error e = Error::FailedPrecondition("container " + id_ + " is not running");
    if (!joins.ok()) e.Wrap(joins.error().ToString());
    return e;
  }
  CASK_ASSIGN_OR_RETURN(UniqueFd procs, OpenProcs(cgroup_path_));
  ProcessIo io;
  CASK_ASSIGN_OR_RETURN(ChildStdio stdio,
                        MakeStdio(proc.terminal, proc.console_size, open_stdin, &io));
  SpawnRequest req;
  req.process = &plan;
  req.stdio = std::move(stdio);
  req.cgroup_procs_fd = procs.get();
  req.joins = std::move(joins).value();
  req.what = "exec in container " + id_;
  req.pty_master_out = &io.pty_master;
  CASK_ASSIGN_OR_RETURN(PendingProcess p, SpawnPending(std::move(req)));
  *io_out = std::move(io);
  return p;
}

Result<std::vector<pid_t>> Container::Pids() const {
  if (cgroup_path_.empty()) return Error::FailedPrecondition("container " + id_ + " has no cgroup");
  return Cgroup(cgroup_path_).Procs();
}

Status Container::KillAll(int sig) const {
  if (cgroup_path_.empty()) return SignalInit(sig);
  return Cgroup(cgroup_path_).Kill(sig);
}

Status Container::Pause() const {
  if (cgroup_path_.empty()) return Error::FailedPrecondition("container " + id_ + " has no cgroup");
  return Cgroup(cgroup_path_).Freeze(true, kFreezeTimeout);
}

Status Container::Resume() const {
  if (cgroup_path_.empty()) return Error::FailedPrecondition("container " + id_ + " has no cgroup");
  return Cgroup(cgroup_path_).Freeze(false, kFreezeTimeout);
}

Status Container::Update(const oci::LinuxResources& r) {
  if (cgroup_path_.empty()) return Error::FailedPrecondition("container " + id_ + " has no cgroup");
  CASK_TRY(Cgroup(cgroup_path_).Apply(r));
  if (r.devices.empty()) return Ok();
  oci::Spec updated = spec_;
  if (!updated.linux) updated.linux.emplace();
  if (!updated.linux->resources) updated.linux->resources.emplace();
  updated.linux->resources->devices = r.devices;
  CASK_ASSIGN_OR_RETURN(std::vector<DeviceRule> rules, EffectiveDeviceRules(updated));
  // The new program first: while both are attached an access needs both.
  CASK_ASSIGN_OR_RETURN(UniqueFd prog, ApplyDeviceRules(cgroup_path_, rules));
  if (device_prog_) {
    CASK_ASSIGN_OR_RETURN(UniqueFd dir, Open(cgroup_path_, O_RDONLY | O_DIRECTORY));
    CASK_TRY(DetachDeviceProgram(dir.get(), device_prog_.get()).Context("container " + id_));
  }
  device_prog_ = std::move(prog);
  spec_ = std::move(updated);
  return Ok();
}

Result<sys::CgroupStats> Container::Stats() const {
  if (cgroup_path_.empty()) return Error::FailedPrecondition("container " + id_ + " has no cgroup");
  return Cgroup(cgroup_path_).Stats();
}

std::string Container::memory_events_path() const {
  return cgroup_path_.empty() ? std::string() : JoinPath(cgroup_path_, "memory.events");
}

Status Container::Destroy() {
  if (destroyed_) return Ok();
  if (init_pidfd_) (void)SignalInit(SIGKILL);
  if (!cgroup_path_.empty()) CASK_TRY(Cgroup(cgroup_path_).Remove(kDestroyTimeout));
  init_pidfd_.Reset();
  destroyed_ = true;
  return Ok();
}

}  // namespace cask::container
