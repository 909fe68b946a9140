#include "lib/shim/task_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"  // complete type for SandboxOptions
#include "lib/oci/id.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/process_io.h"
#include "lib/sandbox/sandbox.h"
#include "lib/shim/delete.h"
#include "lib/shim/rootfs.h"
#include "lib/shim/vm_record.h"

namespace cask::shim {

struct TaskService::Process {
  std::string container_id;
  std::string exec_id;  // "" for the init process
  ProcessState state = ProcessState::kCreated;
  uint32_t pid = 0;  // reported to containerd: the VMM pid for init, the guest pid for execs
  StdioPaths stdio;
  std::optional<oci::Process> exec_spec;  // execs, until started
  std::optional<ExitInfo> exit;
  std::unique_ptr<sandbox::ProcessIoPump> pump;
  bool stdin_pumped = false;
  std::thread watcher;

  std::string_view what() const { return exec_id.empty() ? "task" : "exec"; }
};

struct TaskService::Container {
  std::string id;
  std::string bundle;
  ContainerKind kind = ContainerKind::kStandalone;
  Process init;
  std::map<std::string, std::unique_ptr<Process>> execs;
  std::string rootfs_dir;        // <bundle>/rootfs
  bool rootfs_mounted = false;   // we mounted containerd's snapshot there
  Logger log;
};

namespace {

constexpr auto kDrainAfterExit = std::chrono::seconds(10);
constexpr auto kDrainAfterLoss = std::chrono::seconds(1);
constexpr auto kExitAfterRemove = std::chrono::seconds(10);

Timestamp FromNs(uint64_t ns) {
  return Timestamp(std::chrono::duration_cast<Timestamp::duration>(std::chrono::nanoseconds(ns)));
}

// containerd's stdout/stderr "paths": a FIFO (no scheme), file:///path, or
// binary:///path?args (a logging binary, not supported).
Result<UniqueFd> OpenOutput(const std::string& path) {
  if (path.empty()) return UniqueFd();
  if (path.rfind("binary://", 0) == 0)
    return Error::Unimplemented("stdio " + path + ": logging binaries are not supported by cask");
  if (path.rfind("file://", 0) == 0) {
    std::string file = path.substr(7);
    CASK_TRY(MkdirAll(Dirname(file), 0755));
    return Open(file, O_WRONLY | O_APPEND | O_CREAT, 0640);
  }
  std::string p = path.rfind("fifo://", 0) == 0 ? path.substr(7) : path;
  // The client opened the read side first; if it did not, O_RDWR keeps the
  // open from blocking and the data waits in the pipe.
  int fd = ::open(p.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENXIO) fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Error::Sys(errno, "open " + p);
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  return UniqueFd(fd);
}

// The read side of the stdin FIFO. Non-blocking open never waits for the
// writer; the pump polls before reading, and Linux reports no hang-up on a
// FIFO whose writer has not connected yet.
Result<UniqueFd> OpenInput(const std::string& path) {
  if (path.empty()) return UniqueFd();
  std::string p = path.rfind("fifo://", 0) == 0 ? path.substr(7) : path;
  return Open(p, O_RDONLY | O_NONBLOCK);
}

bool AgentGone(const Error& e) { return e.code() == Code::kUnavailable; }

}  // namespace

TaskService::TaskService(Deps deps) : deps_(std::move(deps)), log_(deps_.log.WithSubsystem("task")) {}

TaskService::~TaskService() { Stop(); }

void TaskService::Publish(const TaskEvent& e) {
  if (deps_.publish) deps_.publish(e);
}

uint32_t TaskService::VmmPid() const { return sandbox_ ? static_cast<uint32_t>(sandbox_->vmm_pid()) : 0; }

Result<std::shared_ptr<sandbox::Sandbox>> TaskService::Vm() const {
  std::lock_guard lk(mu_);
  if (!sandbox_) return Error::Unavailable("the pod VM is gone");
  return sandbox_;
}

Result<TaskService::Container*> TaskService::FindContainer(const std::string& id) {
  auto it = containers_.find(id);
  if (it == containers_.end()) return Error::NotFound("task " + id + " not found");
  return it->second.get();
}

Result<TaskService::Process*> TaskService::FindProcess(const std::string& id, const std::string& exec_id) {
  CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
  if (exec_id.empty()) return &c->init;
  auto it = c->execs.find(exec_id);
  if (it == c->execs.end()) return Error::NotFound("exec " + exec_id + " of task " + id + " not found");
  return it->second.get();
}

bool TaskService::Empty() const {
  std::lock_guard lk(mu_);
  return containers_.empty();
}

Status TaskService::Attach(Container& c, Process& p, bool stdin) {
  sandbox::ProcessIoFds fds;
  CASK_ASSIGN_OR_RETURN(fds.stdout_fd, OpenOutput(p.stdio.stdout_path));
  if (!p.stdio.terminal) {
    CASK_ASSIGN_OR_RETURN(fds.stderr_fd, OpenOutput(p.stdio.stderr_path));
  }
  if (stdin) {
    CASK_ASSIGN_OR_RETURN(fds.stdin_fd, OpenInput(p.stdio.stdin_path));
  }
  p.stdin_pumped = fds.stdin_fd.valid();
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  CASK_ASSIGN_OR_RETURN(p.pump, sandbox::ProcessIoPump::Start(vm->agent(), c.id, p.exec_id, std::move(fds)));
  p.watcher = std::thread([this, vm, cp = &c, pp = &p] { WatchExit(vm, cp, pp); });
  return Ok();
}

void TaskService::WatchExit(std::shared_ptr<sandbox::Sandbox> vm, Container* c, Process* p) {
  auto r = vm->agent().WaitProcess(c->id, p->exec_id);
  ExitInfo e;
  if (r.ok()) {
    e.exit_status = static_cast<uint32_t>(r->status);
    e.exited_at = r->exited_at_ns ? FromNs(r->exited_at_ns) : std::chrono::system_clock::now();
  } else {
    // The VM (or the agent) is gone: the exit is lost, as containerd says it.
    c->log.Warn("lost the exit of a process", {{"exec_id", p->exec_id}, {"error", r.error().ToString()}});
    e.exit_status = kLostExitStatus;
    e.exited_at = std::chrono::system_clock::now();
  }
  // Everything the process wrote reaches containerd before the exit does.
  if (p->pump && !p->pump->WaitDrainedFor(r.ok() ? kDrainAfterExit : kDrainAfterLoss))
    c->log.Warn("output still open after the process exited", {{"exec_id", p->exec_id}});
  std::lock_guard ev(event_mu_);
  {
    std::lock_guard lk(mu_);
    e.pid = p->pid;
    p->exit = e;
    p->state = ProcessState::kStopped;
  }
  exit_cv_.notify_all();
  c->log.Info("process exited", {{"exec_id", p->exec_id}, {"exit_status", std::to_string(e.exit_status)}});
  Publish(TaskExitEvent{c->id, p->exec_id.empty() ? c->id : p->exec_id, e.pid, e.exit_status, e.exited_at});
}

void TaskService::WatchOom(std::shared_ptr<sandbox::Sandbox> vm) {
  sandbox::AgentClient& agent = vm->agent();
  for (;;) {
    auto r = agent.GetOOMEvent();
    if (!r.ok()) {
      if (AgentGone(r.error()) || r.error().code() == Code::kUnimplemented || agent.closed()) return;
      log_.Warn("GetOOMEvent failed", {{"error", r.error().ToString()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    log_.Info("container OOM-killed a process", {{"container", *r}});
    Publish(TaskOomEvent{*r});
  }
}

Result<uint32_t> TaskService::Create(const CreateTaskParams& p) {
  std::unique_lock op(op_mu_);
  CASK_TRY(oci::ValidateId("task id", p.id));
  {
    std::lock_guard lk(mu_);
    if (stopped_) return Error::Unavailable("the shim is shutting down");
    if (containers_.count(p.id)) return Error::AlreadyExists("task " + p.id + " already exists");
  }
  if (!p.checkpoint.empty()) return Error::Unimplemented("restoring a checkpoint is not supported by cask");
  if (p.bundle.empty() || p.bundle[0] != '/')
    return Error::InvalidArgument("bundle \"" + p.bundle + "\" is not an absolute path");

  // Everything is validated before the first side effect.
  const std::string spec_path = JoinPath(p.bundle, "config.json");
  CASK_ASSIGN_OR_RETURN(std::string json, ReadFile(spec_path).Context("read OCI spec"));
  auto parsed = oci::ParseSpec(json);
  if (!parsed.ok()) return std::move(parsed).error().Wrap("invalid OCI spec " + spec_path);
  oci::Spec spec = std::move(parsed).value();
  if (!spec.process) return Error::InvalidArgument("invalid OCI spec " + spec_path + ": process: required to run a task");
  CASK_ASSIGN_OR_RETURN(Grouping g, DecideGrouping(spec.annotations, p.id));

  const bool boot = !sandbox_;
  if (g.kind == ContainerKind::kPodContainer) {
    if (!sandbox_ || g.group_id != sandbox_id_)
      return Error::FailedPrecondition("pod sandbox " + g.group_id + " is not running in this shim");
  } else if (sandbox_) {
    return Error::FailedPrecondition("cannot create another sandbox in pod " + sandbox_id_);
  }
  std::optional<config::Config> cfg;
  if (boot) {
    auto loaded = deps_.load_config(p.config_path);
    if (!loaded.ok()) return std::move(loaded).error().Wrap("cask configuration");
    cfg = std::move(loaded).value();
  }

  auto c = std::make_unique<Container>();
  c->id = p.id;
  c->bundle = p.bundle;
  c->kind = g.kind;
  c->log = log_.With("sandbox", g.group_id).With("container", p.id);
  c->init.container_id = p.id;
  c->init.stdio = p.stdio;

  // The rootfs on the host.
  std::string host_root;
  if (!p.rootfs.empty()) {
    c->rootfs_dir = JoinPath(p.bundle, "rootfs");
    CASK_TRY(MkdirAll(c->rootfs_dir, 0711));
    CASK_TRY_CTX(MountAll(p.rootfs, c->rootfs_dir), "mount rootfs");
    c->rootfs_mounted = true;
    host_root = c->rootfs_dir;
  } else {
    if (!spec.root || spec.root->path.empty())
      return Error::InvalidArgument("invalid OCI spec " + spec_path +
                                    ": root.path: required when containerd passes no rootfs mounts");
    host_root = spec.root->path[0] == '/' ? spec.root->path : JoinPath(p.bundle, spec.root->path);
    struct stat st;
    if (::stat(host_root.c_str(), &st) != 0)
      return Error::InvalidArgument("rootfs " + host_root + " does not exist");
    if (!S_ISDIR(st.st_mode)) return Error::InvalidArgument("rootfs " + host_root + " is not a directory");
  }

  bool shared = false;
  auto unwind = [&](Error err) -> Error {
    if (shared && sandbox_) (void)sandbox_->UnshareRootfs(p.id);
    if (c->rootfs_mounted) (void)UnmountAll(c->rootfs_dir);
    if (boot && sandbox_) (void)DestroySandboxLocked(op);
    c->log.Error("create failed", {{"error", err.ToString()}});
    return err;
  };

  if (boot) {
    sandbox::SandboxOptions so;
    so.id = g.group_id;
    so.config = *cfg;
    so.hostname = spec.hostname;
    so.logger = log_.WithSubsystem("sandbox");
    so.cancelled = [this] {
      std::lock_guard lk(mu_);
      return stopped_;
    };
    c->log.Info("booting pod VM", {{"config", cfg->source}});
    auto sb = deps_.create_sandbox(std::move(so));
    if (!sb.ok()) return unwind(std::move(sb).error());
    {
      std::lock_guard lk(mu_);
      sandbox_ = std::move(sb).value();
      sandbox_id_ = g.group_id;
      sandbox_bundle_ = p.bundle;
    }
    if (Status st = WriteVmRecord(p.bundle, sandbox_->dir()); !st.ok())
      c->log.Warn("cannot record the VM in the bundle", {{"error", st.error().ToString()}});
    oom_thread_ = std::thread([this, vm = sandbox_] { WatchOom(vm); });
    c->log.Info("pod VM ready", {{"vmm_pid", std::to_string(VmmPid())},
                                 {"kernel", sandbox_->agent_info().kernel_release}});
  }

  auto guest_root = sandbox_->ShareRootfs(p.id, host_root, spec.root && spec.root->readonly);
  if (!guest_root.ok()) return unwind(std::move(guest_root).error().Wrap("share rootfs"));
  shared = true;
  auto guest_spec = sandbox_->ShareMounts(p.id, std::move(spec));
  if (!guest_spec.ok()) return unwind(std::move(guest_spec).error().Wrap("share mounts"));
  const bool want_stdin = !p.stdio.stdin_path.empty();
  auto guest_pid = sandbox_->agent().CreateContainer(p.id, *guest_spec, *guest_root, want_stdin);
  if (!guest_pid.ok()) return unwind(std::move(guest_pid).error());
  c->init.pid = VmmPid();
  if (Status st = Attach(*c, c->init, want_stdin); !st.ok()) {
    (void)sandbox_->agent().RemoveContainer(p.id, /*force=*/true);
    if (c->init.watcher.joinable()) c->init.watcher.join();
    c->init.pump.reset();
    return unwind(std::move(st).error().Wrap("attach stdio"));
  }

  TaskCreateEvent ev{p.id, p.bundle, p.rootfs, p.stdio.stdin_path, p.stdio.stdout_path, p.stdio.stderr_path,
                     p.stdio.terminal, p.checkpoint, c->init.pid};
  uint32_t pid = c->init.pid;
  c->log.Info("task created", {{"guest_pid", std::to_string(*guest_pid)}});
  {
    std::lock_guard lk(mu_);
    containers_[p.id] = std::move(c);
  }
  Publish(ev);
  return pid;
}

Result<uint32_t> TaskService::Start(const std::string& id, const std::string& exec_id) {
  std::unique_lock op(op_mu_);
  Container* c;
  Process* p;
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(c, FindContainer(id));
    CASK_ASSIGN_OR_RETURN(p, FindProcess(id, exec_id));
    CASK_TRY(Transition(p->state, ProcessOp::kStart, p->what()));
    if (!exec_id.empty() && c->init.state != ProcessState::kRunning)
      return Error::FailedPrecondition("cannot start exec " + exec_id + ": task " + id + " is " +
                                       std::string(StateName(c->init.state)));
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  std::lock_guard ev(event_mu_);
  if (exec_id.empty()) {
    auto r = vm->agent().StartContainer(id);
    if (!r.ok()) return std::move(r).error();
  } else {
    const bool want_stdin = !p->stdio.stdin_path.empty();
    auto r = vm->agent().ExecProcess(id, exec_id, *p->exec_spec, want_stdin);
    if (!r.ok()) return std::move(r).error();
    {
      std::lock_guard lk(mu_);
      p->pid = *r;
    }
    if (Status st = Attach(*c, *p, want_stdin); !st.ok()) {
      (void)vm->agent().SignalProcess(id, exec_id, SIGKILL);
      return std::move(st).error().Wrap("attach stdio of exec " + exec_id);
    }
  }
  uint32_t pid;
  {
    std::lock_guard lk(mu_);
    if (auto s = Transition(p->state, ProcessOp::kStart, p->what()); s.ok()) p->state = *s;
    // else it already exited: TaskExit waits for us (event_mu_).
    pid = p->pid;
  }
  if (exec_id.empty()) Publish(TaskStartEvent{id, pid});
  else Publish(TaskExecStartedEvent{id, exec_id, pid});
  c->log.Info("started", {{"exec_id", exec_id}, {"pid", std::to_string(pid)}});
  return pid;
}

Status TaskService::Exec(const ExecParams& p) {
  std::unique_lock op(op_mu_);
  auto proc = oci::ParseProcess(p.process_json);
  if (!proc.ok()) return std::move(proc).error().Wrap("invalid exec process spec");
  if (p.exec_id.empty()) return Error::InvalidArgument("exec id must not be empty");
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(p.id));
    if (c->execs.count(p.exec_id)) return Error::AlreadyExists("exec " + p.exec_id + " already exists in task " + p.id);
    CASK_TRY(Transition(c->init.state, ProcessOp::kExec, "task"));
    auto e = std::make_unique<Process>();
    e->container_id = p.id;
    e->exec_id = p.exec_id;
    e->stdio = p.stdio;
    e->exec_spec = std::move(proc).value();
    e->exec_spec->terminal = p.stdio.terminal;
    c->execs[p.exec_id] = std::move(e);
  }
  Publish(TaskExecAddedEvent{p.id, p.exec_id});
  return Ok();
}

Result<ExitInfo> TaskService::Delete(const std::string& id, const std::string& exec_id) {
  std::unique_lock op(op_mu_);
  Container* c;
  Process* p;
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(c, FindContainer(id));
    CASK_ASSIGN_OR_RETURN(p, FindProcess(id, exec_id));
    CASK_TRY(Transition(p->state, ProcessOp::kDelete, p->what()));
  }

  if (!exec_id.empty()) {
    // A stopped exec's watcher has finished; a never-started one has none.
    if (p->watcher.joinable()) p->watcher.join();
    p->pump.reset();
    // The guest keeps the exec's record (exit status, stdio) until told:
    // drop it so that the exec id can be used again. Also after a failed
    // start: the agent lists an exec whose execve failed.
    if (sandbox_ && !sandbox_->agent().closed()) {
      Status rm = sandbox_->agent().RemoveProcess(id, exec_id);
      if (!rm.ok() && rm.error().code() != Code::kNotFound && !AgentGone(rm.error()))
        return std::move(rm).error().Wrap("remove exec " + exec_id + " of task " + id);
    }
    ExitInfo info;
    {
      std::lock_guard lk(mu_);
      info = p->exit.value_or(ExitInfo{p->pid, 0, {}});
      c->execs.erase(exec_id);
    }
    exit_cv_.notify_all();  // a Wait on a never-started exec returns NOT_FOUND now
    return info;
  }

  // The init process: remove the container from the guest (killing a
  // created-but-never-started init), collect the exit, undo the rootfs.
  bool vm_alive = sandbox_ && !sandbox_->agent().closed();
  if (vm_alive) {
    Status rm = sandbox_->agent().RemoveContainer(id, /*force=*/true);
    if (!rm.ok() && rm.error().code() != Code::kNotFound && !AgentGone(rm.error()))
      return std::move(rm).error().Wrap("remove container " + id);
  }
  {
    std::unique_lock lk(mu_);
    exit_cv_.wait_for(lk, kExitAfterRemove, [&] { return p->exit.has_value(); });
  }
  if (p->watcher.joinable()) p->watcher.join();
  for (auto& [eid, e] : c->execs) {
    if (e->watcher.joinable()) e->watcher.join();
    e->pump.reset();
  }
  p->pump.reset();
  if (sandbox_) {
    if (Status st = sandbox_->UnshareRootfs(id); !st.ok())
      c->log.Warn("unshare rootfs", {{"error", st.error().ToString()}});
  }
  if (c->rootfs_mounted) {
    if (Status st = UnmountAll(c->rootfs_dir); !st.ok()) c->log.Warn("unmount rootfs", {{"error", st.error().ToString()}});
  }
  ExitInfo info;
  {
    std::lock_guard lk(mu_);
    info = p->exit.value_or(ExitInfo{p->pid, kLostExitStatus, std::chrono::system_clock::now()});
    containers_.erase(id);  // c and p die here
  }
  exit_cv_.notify_all();
  {
    std::lock_guard ev(event_mu_);
    Publish(TaskDeleteEvent{id, id, info.pid, info.exit_status, info.exited_at});
  }
  log_.Info("task deleted", {{"container", id}});
  bool last;
  {
    std::lock_guard lk(mu_);
    last = containers_.empty();
  }
  if (last && sandbox_) {
    if (Status st = DestroySandboxLocked(op); !st.ok())
      log_.Error("destroy pod VM", {{"error", st.error().ToString()}});
  }
  return info;
}

Status TaskService::DestroySandboxLocked(std::unique_lock<std::mutex>&) {
  if (!sandbox_) return Ok();
  log_.Info("destroying pod VM", {{"sandbox", sandbox_id_}});
  Status st = sandbox_->Destroy();
  if (oom_thread_.joinable()) oom_thread_.join();
  std::shared_ptr<sandbox::Sandbox> dead;
  {
    std::lock_guard lk(mu_);
    dead = std::move(sandbox_);
    sandbox_id_.clear();
  }
  if (st.ok()) RemoveVmRecord(sandbox_bundle_);
  dead.reset();
  return st;
}

Result<ProcessStatus> TaskService::State(const std::string& id, const std::string& exec_id) {
  std::lock_guard lk(mu_);
  CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
  CASK_ASSIGN_OR_RETURN(Process * p, FindProcess(id, exec_id));
  ProcessStatus s;
  s.id = id;
  s.exec_id = exec_id;
  s.bundle = c->bundle;
  s.pid = p->pid;
  s.state = p->state;
  s.stdio = p->stdio;
  s.exit = p->exit;
  return s;
}

Result<std::vector<PidInfo>> TaskService::Pids(const std::string& id) {
  std::vector<PidInfo> out;
  std::map<uint32_t, std::string> exec_pids;
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
    out.push_back(PidInfo{VmmPid(), ""});
    for (auto& [eid, e] : c->execs)
      if (e->pid) exec_pids[e->pid] = eid;
  }
  // Guest pids are best effort: the VMM pid alone keeps a live task visible.
  if (auto vm = Vm(); vm.ok() && !(*vm)->agent().closed()) {
    auto guest = (*vm)->agent().ListProcesses(id);
    if (guest.ok()) {
      for (uint32_t gp : *guest) {
        auto it = exec_pids.find(gp);
        out.push_back(PidInfo{gp, it == exec_pids.end() ? "" : it->second});
      }
    }
  }
  return out;
}

Status TaskService::Kill(const std::string& id, const std::string& exec_id, uint32_t signal, bool all) {
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Process * p, FindProcess(id, exec_id));
    CASK_TRY(Transition(p->state, ProcessOp::kKill, p->what()));
    if (!sandbox_) return Error::NotFound("process already finished");
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  Status st = vm->agent().SignalProcess(id, exec_id, static_cast<int>(signal), all && exec_id.empty());
  if (!st.ok() && (st.error().code() == Code::kNotFound || AgentGone(st.error())))
    return Error::NotFound("process already finished");
  return st;
}

Result<ExitInfo> TaskService::Wait(const std::string& id, const std::string& exec_id) {
  std::unique_lock lk(mu_);
  for (;;) {
    CASK_ASSIGN_OR_RETURN(Process * p, FindProcess(id, exec_id));
    if (p->exit) return *p->exit;
    exit_cv_.wait(lk);
  }
}

Status TaskService::Pause(const std::string& id) {
  return ChangeFreeze(id, ProcessOp::kPause, &sandbox::AgentClient::PauseContainer, TaskPausedEvent{id});
}

Status TaskService::Resume(const std::string& id) {
  return ChangeFreeze(id, ProcessOp::kResume, &sandbox::AgentClient::ResumeContainer, TaskResumedEvent{id});
}

Status TaskService::ChangeFreeze(const std::string& id, ProcessOp op,
                                 Status (sandbox::AgentClient::*agent_call)(const std::string&),
                                 const TaskEvent& event) {
  std::unique_lock op_lock(op_mu_);
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
    CASK_TRY(Transition(c->init.state, op, "task"));
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  CASK_TRY((vm->agent().*agent_call)(id));
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
    if (auto s = Transition(c->init.state, op, "task"); s.ok()) c->init.state = *s;
  }
  Publish(event);
  return Ok();
}

Status TaskService::CloseIo(const std::string& id, const std::string& exec_id) {
  bool pumped;
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Process * p, FindProcess(id, exec_id));
    CASK_TRY(Transition(p->state, ProcessOp::kCloseIo, p->what()));
    if (p->state == ProcessState::kStopped) return Ok();
    pumped = p->stdin_pumped;
  }
  // With a stdin FIFO the pump closes the guest's stdin when the client
  // closes its end (after everything written was copied), which containerd
  // does before CloseIO.
  if (pumped) return Ok();
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  Status st = vm->agent().CloseStdin(id, exec_id);
  if (!st.ok() && st.error().code() == Code::kNotFound) return Ok();
  return st;
}

Status TaskService::ResizePty(const std::string& id, const std::string& exec_id, uint32_t width, uint32_t height) {
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Process * p, FindProcess(id, exec_id));
    if (!p->stdio.terminal) return Error::FailedPrecondition(std::string(p->what()) + " has no terminal");
    if (p->state == ProcessState::kStopped) return Ok();
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  return vm->agent().TtyWinResize(id, exec_id, height, width);
}

Status TaskService::Update(const std::string& id, const std::string& resources_json) {
  std::unique_lock op(op_mu_);
  auto res = oci::ParseLinuxResources(resources_json);
  if (!res.ok()) return std::move(res).error().Wrap("invalid resources");
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
    CASK_TRY(Transition(c->init.state, ProcessOp::kUpdate, "task"));
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  return vm->agent().UpdateContainer(id, *res);
}

Result<sandbox::ContainerStats> TaskService::Stats(const std::string& id) {
  {
    std::lock_guard lk(mu_);
    CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
    if (c->init.state == ProcessState::kStopped) return Error::NotFound("task " + id + " has exited");
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  return vm->agent().StatsContainer(id);
}

Result<ConnectInfo> TaskService::Connect(const std::string& id) {
  std::lock_guard lk(mu_);
  CASK_ASSIGN_OR_RETURN(Container * c, FindContainer(id));
  (void)c;
  return ConnectInfo{static_cast<uint32_t>(::getpid()), VmmPid()};
}

void TaskService::Stop() {
  {
    std::lock_guard lk(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  std::unique_lock op(op_mu_);
  // Closing the VM ends every blocked agent call: watchers record lost exits.
  if (sandbox_) {
    log_.Info("stopping: destroying pod VM", {{"sandbox", sandbox_id_}});
    (void)sandbox_->Destroy();
  }
  std::vector<Container*> all;
  {
    std::lock_guard lk(mu_);
    for (auto& [id, c] : containers_) all.push_back(c.get());
  }
  for (Container* c : all) {
    if (c->init.watcher.joinable()) c->init.watcher.join();
    for (auto& [eid, e] : c->execs) {
      if (e->watcher.joinable()) e->watcher.join();
      e->pump.reset();
    }
    c->init.pump.reset();
    if (c->rootfs_mounted) (void)UnmountAll(c->rootfs_dir);
  }
  (void)DestroySandboxLocked(op);
  exit_cv_.notify_all();
}

}  // namespace cask::shim
