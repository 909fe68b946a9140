#include "cmd/containerd-shim-cask-v2/task_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"  // complete type for SandboxOptions
#include "lib/pool/pooled_hypervisor.h"
#include "lib/sandbox/pod_netns.h"
#include "lib/oci/parse.h"
#include "lib/oci/id.h"
#include "lib/sandbox/container.h"
#include "lib/sandbox/pod_shm.h"
#include "lib/sandbox/process_io.h"
#include "lib/sandbox/sandbox.h"
#include "cmd/containerd-shim-cask-v2/vm_record.h"

namespace cask::shim {

struct TaskService::CreatePlan {
  oci::Spec spec;
  std::string spec_path;
  Grouping grouping;
  std::shared_ptr<sandbox::Sandbox> vm;     // the running pod VM; null: this task boots one
  std::optional<config::Config> cfg;        // when booting
  std::optional<sandbox::PodVmSize> size;   // when booting
  std::string netns_path;                   // when booting: the pod network namespace ("" for none)
};

struct TaskService::Task {
  std::string id;
  std::string bundle;
  ContainerKind kind = ContainerKind::kStandalone;
  Logger log;
  StdioPaths init_stdio;
  std::map<std::string, StdioPaths> exec_stdio;
  std::unique_ptr<sandbox::Container> c;
};

namespace {

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

Result<sandbox::ProcessIoFds> OpenStdio(const StdioPaths& s) {
  sandbox::ProcessIoFds fds;
  CASK_ASSIGN_OR_RETURN(fds.stdout_fd, OpenOutput(s.stdout_path));
  if (!s.terminal) {
    CASK_ASSIGN_OR_RETURN(fds.stderr_fd, OpenOutput(s.stderr_path));
  }
  CASK_ASSIGN_OR_RETURN(fds.stdin_fd, OpenInput(s.stdin_path));
  return fds;
}

// runc's io_uid/io_gid: the stdio FIFOs belong to the container's user.
Status ChownStdio(const sandbox::ProcessIoFds& fds, uint32_t uid, uint32_t gid) {
  if (uid == 0 && gid == 0) return Ok();
  for (const UniqueFd* fd : {&fds.stdin_fd, &fds.stdout_fd, &fds.stderr_fd}) {
    if (!fd->valid()) continue;
    struct stat st;
    if (::fstat(fd->get(), &st) != 0) return Error::Sys(errno, "stat stdio");
    if (!S_ISFIFO(st.st_mode)) continue;  // a file:// log stays the shim's
    if (::fchown(fd->get(), uid, gid) != 0)
      return Error::Sys(errno, "chown stdio FIFO to io_uid " + std::to_string(uid) + ", io_gid " + std::to_string(gid));
  }
  return Ok();
}

constexpr std::string_view kCgroupMount = "/sys/fs/cgroup";

// The cgroup directories `path` names: on the unified hierarchy one, on a
// v1 (or hybrid) host one per hierarchy that has it.
Result<std::vector<std::string>> ShimCgroupDirs(const std::string& path) {
  std::string rel = path;
  while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  if (rel.empty()) return Error::InvalidArgument("runc option shim_cgroup \"" + path + "\": the root cgroup");
  for (size_t start = 0; start <= rel.size();) {
    size_t slash = rel.find('/', start);
    std::string_view part = std::string_view(rel).substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..")
      return Error::InvalidArgument("runc option shim_cgroup \"" + path + "\": not a cgroup path");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  std::vector<std::string> dirs;
  const std::string root(kCgroupMount);
  if (PathExists(root + "/cgroup.controllers")) {
    if (PathExists(JoinPath(root, rel) + "/cgroup.procs")) dirs.push_back(JoinPath(root, rel));
  } else {
    for (const char* h : {"memory", "cpu,cpuacct", "cpu", "pids", "cpuset", "blkio", "devices", "freezer",
                          "net_cls,net_prio", "perf_event", "hugetlb", "systemd", "unified"}) {
      std::string d = JoinPath(JoinPath(root, h), rel);
      if (PathExists(d + "/cgroup.procs")) dirs.push_back(d);
    }
  }
  if (dirs.empty()) return Error::InvalidArgument("runc option shim_cgroup \"" + path + "\": no such cgroup");
  return dirs;
}

Status CheckShimCgroup(const std::string& path) {
  if (path.empty()) return Ok();
  CASK_TRY(ShimCgroupDirs(path));
  return Ok();
}

Status JoinShimCgroup(const std::string& path) {
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> dirs, ShimCgroupDirs(path));
  for (const std::string& d : dirs) CASK_TRY(WriteFile(d + "/cgroup.procs", std::to_string(::getpid())).Context("join shim_cgroup"));
  return Ok();
}

bool AgentGone(const Error& e) { return e.code() == Code::kUnavailable; }

// The one mapping to containerd's codes for errors that are not about an
// unknown task or exec id. `from_guest`: the text came from the agent and
// is cut before it goes anywhere.
Error ForContainerd(Error e, bool from_guest) {
  if (from_guest) e = e.Bounded(kMaxGuestMessage);
  switch (e.code()) {
    case Code::kNotFound:
      // "No such task" is containerd's reading of NOT_FOUND: a missing file
      // on the host is the request's fault, anything the guest misses is a
      // failed precondition.
      return Error(from_guest ? Code::kFailedPrecondition : Code::kInvalidArgument, e.ToString());
    case Code::kAlreadyExists:
      return Error(Code::kFailedPrecondition, e.ToString());
    default:
      return e;
  }
}
Error FromGuest(Error e) { return ForContainerd(std::move(e), true); }
Error FromHost(Error e) { return ForContainerd(std::move(e), false); }

Status FromGuest(Status st) {
  if (st.ok()) return st;
  return FromGuest(std::move(st).error());
}

}  // namespace

TaskService::TaskService(Deps deps) : deps_(std::move(deps)), log_(deps_.log.WithSubsystem("task")) {}

TaskService::~TaskService() { Stop(); }

void TaskService::Publish(const TaskEvent& e) {
  if (deps_.publish) deps_.publish(e);
}

uint32_t TaskService::VmmPid() const { return sandbox_ ? static_cast<uint32_t>(sandbox_->vmm_pid()) : 0; }

Result<std::shared_ptr<sandbox::Sandbox>> TaskService::Vm() const {
  MutexLock lk(mu_);
  if (!sandbox_) return Error::Unavailable("the pod VM is gone");
  return sandbox_;
}

std::chrono::milliseconds TaskService::TeardownTimeout() const {
  MutexLock lk(mu_);
  return teardown_timeout_;
}

uint32_t TaskService::ReportedPid(const sandbox::Process& p) {
  if (!p.is_init()) return p.pid();
  MutexLock lk(mu_);
  return VmmPid();
}

Result<TaskService::Task*> TaskService::FindTask(const std::string& id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end() || !it->second->c) return Error::NotFound("task " + id + " not found");
  return it->second.get();
}

Result<std::shared_ptr<sandbox::Process>> TaskService::FindProcess(const std::string& id,
                                                                   const std::string& exec_id) {
  CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
  auto p = t->c->Find(exec_id);
  if (!p) return Error::NotFound("exec " + exec_id + " of task " + id + " not found");
  return p;
}

bool TaskService::Empty() const {
  MutexLock lk(mu_);
  return tasks_.empty();
}

void TaskService::OnExit(const sandbox::Process& p, const sandbox::ExitInfo& e) {
  // Wakes Wait; TaskExit after the start event (event_mu_).
  uint32_t pid = ReportedPid(p);
  MutexLock ev(event_mu_);
  {
    // The exit is recorded: a Wait that checked before holds mu_ until it
    // sleeps, so taking it here orders this wake-up after that sleep.
    MutexLock lk(mu_);
  }
  exit_cv_.notify_all();
  const std::string& cid = p.container_id();
  Publish(TaskExitEvent{cid, p.is_init() ? cid : p.exec_id(), pid, e.status, e.exited_at});
}

void TaskService::TerminateVm(const std::string& why) {
  std::shared_ptr<sandbox::Sandbox> vm;
  {
    MutexLock lk(mu_);
    if (!sandbox_ || vm_terminated_) return;
    vm = sandbox_;
    vm_terminated_ = true;
    vm_killed_ = true;
    for (auto& [id, t] : tasks_)
      if (t->c) t->c->MarkVmKilled();
  }
  log_.Warn("destroying the pod VM without the agent", {{"reason", why}});
  // Every pending and blocked agent call fails now; the watchers record
  // the tasks as killed.
  vm->agent().Close();
  if (Status st = vm->Destroy(); !st.ok()) log_.Error("destroy pod VM", {{"error", st.error().ToString()}});
}

Status TaskService::WithTeardownDeadline(const std::string& what, const std::function<Status()>& call) {
  sandbox::GuestDeadline deadline(TeardownTimeout(), [this, what] {
    TerminateVm(what + ": the agent did not answer within agent.teardown_timeout_ms");
  });
  return call();
}

void TaskService::WatchOom(std::shared_ptr<sandbox::Sandbox> vm) {
  sandbox::AgentClient& agent = vm->agent();
  OomEventFilter filter;
  uint64_t refused_logged = 0;
  for (;;) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = agent.GetOOMEvent();
    if (agent.closed()) return;
    if (!r.ok()) {
      if (AgentGone(r.error()) || r.error().code() == Code::kUnimplemented) return;
      log_.Warn("GetOOMEvent failed", {{"error", r.error().Bounded(kMaxGuestMessage).ToString()}});
    } else {
      bool known;
      {
        MutexLock lk(mu_);
        known = tasks_.count(*r) > 0;
      }
      if (filter.Accept(*r, known, std::chrono::steady_clock::now())) {
        {
          MutexLock lk(mu_);
          ++oom_published_[*r];
        }
        log_.Info("container OOM-killed a process", {{"container", *r}});
        Publish(TaskOomEvent{*r});
      } else if (filter.unknown() + filter.coalesced() + filter.rate_limited() >= refused_logged * 2 + 1) {
        refused_logged = filter.unknown() + filter.coalesced() + filter.rate_limited();
        log_.Warn("OOM notifications refused", {{"id", BoundedString(*r, 64)},
                                                {"unknown", std::to_string(filter.unknown())},
                                                {"coalesced", std::to_string(filter.coalesced())},
                                                {"rate_limited", std::to_string(filter.rate_limited())}});
      }
    }
    // However fast the guest answers, calls are paced.
    auto spent = std::chrono::steady_clock::now() - t0;
    if (spent < kOomPollInterval) std::this_thread::sleep_for(kOomPollInterval - spent);
  }
}

Result<uint32_t> TaskService::Create(const CreateTaskParams& p) {
  MutexLock op(op_mu_);
  return CreateLocked(p);
}

// Create, in named steps. Everything PlanCreate checks is checked before
// the first side effect; each later step undoes its own work on failure
// (the Container owner unwinds itself; a VM booted for this task is
// destroyed), so a failed Create leaves nothing behind.
Result<uint32_t> TaskService::CreateLocked(const CreateTaskParams& p) {
  CASK_ASSIGN_OR_RETURN(CreatePlan plan, PlanCreate(p));
  for (const std::string& f : p.ignored_options)
    log_.Debug("runc option ignored: it has no meaning for a VM runtime", {{"container", p.id}, {"option", f}});
  auto t = std::make_unique<Task>();
  t->id = p.id;
  t->bundle = p.bundle;
  t->kind = plan.grouping.kind;
  t->log = log_.With("sandbox", plan.grouping.group_id).With("container", p.id);
  t->init_stdio = p.stdio;
  CASK_ASSIGN_OR_RETURN(sandbox::ContainerOptions co, ContainerOptionsFor(p, plan, t->log));

  const bool boot = !plan.vm;
  if (boot) {
    CASK_ASSIGN_OR_RETURN(plan.vm, BootPodVm(p, plan, t->log));
  }
  // Output that never ends (a guest answering reads with nothing) cannot
  // hold an exit longer than a teardown may take.
  co.drain_after_exit = TeardownTimeout();
  auto c = sandbox::Container::Create(plan.vm, std::move(co));
  if (!c.ok()) {
    if (boot) (void)DestroySandboxLocked();  // a pod of one leaves no VM behind
    return FromGuest(std::move(c).error());
  }
  t->c = std::move(c).value();
  return RegisterTask(p, std::move(t));
}

Result<TaskService::CreatePlan> TaskService::PlanCreate(const CreateTaskParams& p) {
  CASK_TRY(oci::ValidateId("task id", p.id));
  {
    MutexLock lk(mu_);
    if (stopped_) return Error::Unavailable("the shim is shutting down");
    if (tasks_.count(p.id)) return Error::AlreadyExists("task " + p.id + " already exists");
  }
  if (!p.checkpoint.empty()) return Error::Unimplemented("restoring a checkpoint is not supported by cask");
  if (p.bundle.empty() || p.bundle[0] != '/')
    return Error::InvalidArgument("bundle \"" + p.bundle + "\" is not an absolute path");

  CreatePlan plan;
  plan.spec_path = JoinPath(p.bundle, "config.json");
  auto json = ReadFile(plan.spec_path);
  if (!json.ok()) return FromHost(std::move(json).error().Wrap("read OCI spec"));
  auto parsed = oci::ParseSpec(*json);
  if (!parsed.ok()) {
    // A hostNetwork pod's spec fails validation first (hostname without a
    // uts namespace): say what was really asked.
    CASK_TRY(sandbox::RefuseHostNamespacesInJson(*json));
    return FromHost(std::move(parsed).error().Wrap("invalid OCI spec " + plan.spec_path));
  }
  plan.spec = std::move(parsed).value();
  if (!plan.spec.process)
    return Error::InvalidArgument("invalid OCI spec " + plan.spec_path + ": process: required to run a task");
  CASK_ASSIGN_OR_RETURN(plan.grouping, DecideGrouping(plan.spec.annotations, p.id));

  std::string vm_id;
  {
    MutexLock lk(mu_);
    plan.vm = sandbox_;
    vm_id = sandbox_id_;
  }
  if (plan.grouping.kind == ContainerKind::kPodContainer) {
    if (!plan.vm || plan.grouping.group_id != vm_id)
      return Error::FailedPrecondition("pod sandbox " + plan.grouping.group_id + " is not running in this shim");
  } else if (plan.vm) {
    return Error::FailedPrecondition("cannot create another sandbox in pod " + vm_id);
  }
  if (!plan.vm) {
    // A VM cannot share the host's network, PID or IPC namespace.
    CASK_ASSIGN_OR_RETURN(plan.netns_path, sandbox::PodNetnsPath(plan.spec));
    auto loaded = deps_.load_config(p.config_path);
    if (!loaded.ok()) return FromHost(std::move(loaded).error().Wrap("cask configuration"));
    plan.cfg = std::move(loaded).value();
    auto size = sandbox::SizePodVm(plan.cfg->hypervisor, plan.spec.annotations);
    if (!size.ok()) return std::move(size).error().Wrap("size the pod VM");
    plan.size = *size;
    CASK_TRY(CheckShimCgroup(p.shim_cgroup));
  }
  return plan;
}

Result<sandbox::ContainerOptions> TaskService::ContainerOptionsFor(const CreateTaskParams& p, CreatePlan& plan,
                                                                   const Logger& log) {
  sandbox::ContainerOptions co;
  co.id = p.id;
  co.log = log;
  co.on_exit = [this](sandbox::Process& proc, const sandbox::ExitInfo& e) { OnExit(proc, e); };
  co.before_exit = [this](sandbox::Process& proc) { BeforeExit(proc); };
  if (!p.rootfs.empty()) {
    co.rootfs_dir = JoinPath(p.bundle, "rootfs");
    for (const RootfsMount& m : p.rootfs) co.rootfs_mounts.push_back({m.type, m.source, m.options});
    if (Status st = MkdirAll(co.rootfs_dir, 0711); !st.ok()) return FromHost(std::move(st).error());
  } else {
    const oci::Spec& spec = plan.spec;
    if (!spec.root || spec.root->path.empty())
      return Error::InvalidArgument("invalid OCI spec " + plan.spec_path +
                                    ": root.path: required when containerd passes no rootfs mounts");
    co.rootfs_dir = spec.root->path[0] == '/' ? spec.root->path : JoinPath(p.bundle, spec.root->path);
    struct stat st;
    if (::stat(co.rootfs_dir.c_str(), &st) != 0)
      return Error::InvalidArgument("rootfs " + co.rootfs_dir + " does not exist");
    if (!S_ISDIR(st.st_mode)) return Error::InvalidArgument("rootfs " + co.rootfs_dir + " is not a directory");
  }
  auto io = OpenStdio(p.stdio);
  if (!io.ok()) return FromHost(std::move(io).error().Wrap("open stdio"));
  if (Status own = ChownStdio(*io, p.io_uid, p.io_gid); !own.ok()) return FromHost(std::move(own).error());
  co.init_io = std::move(io).value();
  co.spec = plan.spec;
  return co;
}

Result<std::shared_ptr<sandbox::Sandbox>> TaskService::BootPodVm(const CreateTaskParams& p, const CreatePlan& plan,
                                                                 const Logger& log) {
  if (!p.shim_cgroup.empty()) {
    // Before the VM: QEMU and virtiofsd start in the shim's cgroup.
    if (Status st = JoinShimCgroup(p.shim_cgroup); !st.ok()) return FromHost(std::move(st).error());
    log.Info("joined the shim cgroup", {{"cgroup", p.shim_cgroup}});
  }
  sandbox::SandboxOptions so;
  so.id = plan.grouping.group_id;
  so.config = *plan.cfg;
  so.config.hypervisor.vcpus = plan.size->vcpus;
  so.config.hypervisor.memory_mib = plan.size->memory_mib;
  so.hostname = plan.spec.hostname;
  so.netns_path = plan.netns_path;
  so.shm_bytes = sandbox::PodShmBytes(plan.spec);
  so.logger = log_.WithSubsystem("sandbox");
  if (plan.cfg->pool.enabled) {
    // A ready VM from the node's pool when one fits; cold otherwise.
    pool::PooledOptions po;
    po.pool = plan.cfg->pool;
    po.config_path = p.config_path;
    po.log = log_.WithSubsystem("pool");
    so.hypervisor = pool::NewPooled(std::move(po));
  }
  so.cancelled = [this] {
    MutexLock lk(mu_);
    return stopped_;
  };
  log.Info("booting pod VM", {{"config", plan.cfg->source},
                              {"vcpus", std::to_string(plan.size->vcpus)},
                              {"memory_mib", std::to_string(plan.size->memory_mib)},
                              {"sized_by", plan.size->reason}});
  auto sb = deps_.create_sandbox(std::move(so));
  if (!sb.ok()) return FromHost(std::move(sb).error());
  std::shared_ptr<sandbox::Sandbox> vm = std::move(sb).value();
  {
    MutexLock lk(mu_);
    sandbox_ = vm;
    sandbox_id_ = plan.grouping.group_id;
    sandbox_bundle_ = p.bundle;
    teardown_timeout_ = std::chrono::milliseconds(plan.cfg->agent.teardown_timeout_ms);
    vm_killed_ = false;
    vm_terminated_ = false;
  }
  if (Status st = WriteVmRecord(p.bundle, vm->dir()); !st.ok())
    log.Warn("cannot record the VM in the bundle", {{"error", st.error().ToString()}});
  oom_thread_ = std::thread([this, vm] { WatchOom(vm); });
  log.Info("pod VM ready", {{"vmm_pid", std::to_string(vm->vmm_pid())},
                            {"from_pool", vm->warm() ? "true" : "false"},
                            {"kernel", BoundedString(vm->agent_info().kernel_release, 128)}});
  return vm;
}

uint32_t TaskService::RegisterTask(const CreateTaskParams& p, std::unique_ptr<Task> t) {
  TaskCreateEvent ev{p.id, p.bundle, p.rootfs, p.stdio.stdin_path, p.stdio.stdout_path, p.stdio.stderr_path,
                     p.stdio.terminal, p.checkpoint, 0};
  {
    MutexLock lk(mu_);
    ev.pid = VmmPid();
    tasks_[p.id] = std::move(t);
  }
  log_.Info("task created", {{"container", p.id}});
  Publish(ev);
  return ev.pid;
}

void TaskService::BeforeExit(sandbox::Process& p) {
  // containerd's CRI plugin marks a container OOMKilled when TaskOOM
  // arrives; the OOM watcher's poll may not have seen the kill yet, so the
  // exit of an init asks the guest's cgroup (memory.events oom_kill) first.
  if (!p.is_init()) return;
  const std::string& cid = p.container_id();
  auto vm = Vm();
  if (!vm.ok() || (*vm)->agent().closed()) return;
  auto stats = (*vm)->agent().StatsContainer(cid);
  if (!stats.ok()) return;
  auto it = stats->memory_events.find("oom_kill");
  if (it == stats->memory_events.end() || it->second == 0) return;
  {
    MutexLock lk(mu_);
    uint64_t& published = oom_published_[cid];
    if (published >= it->second) return;
    published = it->second;
  }
  log_.Info("container OOM-killed a process", {{"container", cid}, {"seen_at", "exit"}});
  Publish(TaskOomEvent{cid});
}

Result<uint32_t> TaskService::Start(const std::string& id, const std::string& exec_id) {
  MutexLock op(op_mu_);
  sandbox::Container* c;
  std::shared_ptr<sandbox::Process> p;
  StdioPaths stdio;
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
    CASK_ASSIGN_OR_RETURN(p, FindProcess(id, exec_id));
    c = t->c.get();
    if (!exec_id.empty()) stdio = t->exec_stdio[exec_id];
  }
  CASK_TRY(p->Check(ProcessOp::kStart));
  if (!exec_id.empty() && c->init()->state() != ProcessState::kRunning)
    return Error::FailedPrecondition("cannot start exec " + exec_id + ": task " + id + " is " +
                                     std::string(StateName(c->init()->state())));
  sandbox::ProcessIoFds io;
  if (!exec_id.empty()) {
    auto opened = OpenStdio(stdio);
    if (!opened.ok()) return FromHost(std::move(opened).error().Wrap("open stdio of exec " + exec_id));
    io = std::move(opened).value();
  }
  MutexLock ev(event_mu_);
  auto started = c->Start(*p, std::move(io));
  if (!started.ok()) return FromGuest(std::move(started).error());
  uint32_t pid = ReportedPid(*p);
  if (exec_id.empty()) Publish(TaskStartEvent{id, pid});
  else Publish(TaskExecStartedEvent{id, exec_id, pid});
  log_.Info("started", {{"container", id}, {"exec_id", exec_id}, {"pid", std::to_string(pid)}});
  return pid;
}

Status TaskService::Exec(const ExecParams& p) {
  MutexLock op(op_mu_);
  auto proc = oci::ParseProcess(p.process_json);
  if (!proc.ok()) return FromHost(std::move(proc).error().Wrap("invalid exec process spec"));
  if (p.exec_id.empty()) return Error::InvalidArgument("exec id must not be empty");
  oci::Process spec = std::move(proc).value();
  spec.terminal = p.stdio.terminal;
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(Task * t, FindTask(p.id));
    CASK_TRY(t->c->AddExec(p.exec_id, std::move(spec)));
    t->exec_stdio[p.exec_id] = p.stdio;
  }
  Publish(TaskExecAddedEvent{p.id, p.exec_id});
  return Ok();
}

Result<ExitInfo> TaskService::Delete(const std::string& id, const std::string& exec_id) {
  MutexLock op(op_mu_);
  sandbox::Container* c;
  std::shared_ptr<sandbox::Process> p;
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
    CASK_ASSIGN_OR_RETURN(p, FindProcess(id, exec_id));
    c = t->c.get();
  }
  CASK_TRY(p->Check(ProcessOp::kDelete));
  const auto timeout = TeardownTimeout();

  if (!exec_id.empty()) {
    Status st = WithTeardownDeadline("delete exec " + exec_id, [&] { return c->RemoveExec(exec_id, timeout); });
    if (!st.ok() && (st.error().code() == Code::kDeadlineExceeded || AgentGone(st.error()))) {
      TerminateVm("delete exec " + exec_id + ": " + st.error().Bounded(kMaxGuestMessage).ToString());
      st = c->RemoveExec(exec_id, timeout);
    }
    if (!st.ok()) return FromGuest(std::move(st).error());
    ExitInfo info{p->pid(), 0, {}};
    if (auto e = p->exit()) info = ExitInfo{p->pid(), e->status, e->exited_at};
    {
      MutexLock lk(mu_);
      if (auto t = FindTask(id); t.ok()) (*t)->exec_stdio.erase(exec_id);
    }
    exit_cv_.notify_all();  // a Wait on a never-started exec returns NOT_FOUND now
    return info;
  }

  // The init process: the container leaves the guest (a created init is
  // killed), every exit and output is collected, then the owner unwinds.
  Status st = WithTeardownDeadline("delete task " + id, [&] { return c->Remove(timeout); });
  if (!st.ok()) {
    log_.Warn("the guest did not finish the task", {{"container", id},
                                                    {"error", st.error().Bounded(kMaxGuestMessage).ToString()}});
    TerminateVm("delete task " + id);
    st = c->Remove(timeout);  // the agent is closed: only the local waits remain
    if (!st.ok()) log_.Error("task still not finished", {{"container", id}, {"error", st.error().ToString()}});
  }
  ExitInfo info;
  std::unique_ptr<Task> dead;
  {
    MutexLock lk(mu_);
    auto e = p->exit();
    info = e ? ExitInfo{VmmPid(), e->status, e->exited_at}
             : ExitInfo{VmmPid(), vm_killed_ ? kKilledExitStatus : kLostExitStatus, std::chrono::system_clock::now()};
    auto it = tasks_.find(id);
    dead = std::move(it->second);
    tasks_.erase(it);
    oom_published_.erase(id);
  }
  dead.reset();  // the Container unwinds: watchers, pumps, share, rootfs
  exit_cv_.notify_all();
  {
    MutexLock ev(event_mu_);
    Publish(TaskDeleteEvent{id, id, info.pid, info.exit_status, info.exited_at});
  }
  log_.Info("task deleted", {{"container", id}});
  if (Empty()) {
    if (Status d = DestroySandboxLocked(); !d.ok()) log_.Error("destroy pod VM", {{"error", d.error().ToString()}});
  }
  return info;
}

Status TaskService::DestroySandboxLocked() {
  std::shared_ptr<sandbox::Sandbox> vm;
  std::string bundle;
  {
    MutexLock lk(mu_);
    if (!sandbox_) return Ok();
    vm = sandbox_;
    bundle = sandbox_bundle_;
    log_.Info("destroying pod VM", {{"sandbox", sandbox_id_}});
  }
  // Destroy asks the agent first (DestroySandbox): bounded like any teardown.
  Status st = WithTeardownDeadline("destroy the pod VM", [&] { return vm->Destroy(); });
  vm->agent().Close();
  if (oom_thread_.joinable()) oom_thread_.join();
  {
    MutexLock lk(mu_);
    sandbox_.reset();
    sandbox_id_.clear();
  }
  if (st.ok()) RemoveVmRecord(bundle);
  vm.reset();
  return st;
}

Result<ProcessStatus> TaskService::State(const std::string& id, const std::string& exec_id) {
  MutexLock lk(mu_);
  CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  ProcessStatus s;
  s.id = id;
  s.exec_id = exec_id;
  s.bundle = t->bundle;
  s.pid = p->is_init() ? VmmPid() : p->pid();
  s.state = p->state();
  s.stdio = exec_id.empty() ? t->init_stdio : t->exec_stdio[exec_id];
  if (auto e = p->exit()) s.exit = ExitInfo{s.pid, e->status, e->exited_at};
  return s;
}

Result<std::vector<PidInfo>> TaskService::Pids(const std::string& id) {
  std::vector<PidInfo> out;
  std::map<uint32_t, std::string> exec_pids;
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
    out.push_back(PidInfo{VmmPid(), ""});
    for (auto& e : t->c->Execs())
      if (e->pid()) exec_pids[e->pid()] = e->exec_id();
  }
  // Guest pids are best effort: the VMM pid alone keeps a live task visible.
  if (auto vm = Vm(); vm.ok() && !(*vm)->agent().closed()) {
    auto guest = (*vm)->agent().ListProcesses(id);
    if (guest.ok()) {
      constexpr size_t kMaxPids = 65536;  // the guest's list is bounded before it is stored
      for (size_t i = 0; i < guest->size() && i < kMaxPids; ++i) {
        uint32_t gp = (*guest)[i];
        auto it = exec_pids.find(gp);
        out.push_back(PidInfo{gp, it == exec_pids.end() ? "" : it->second});
      }
    }
  }
  return out;
}

Status TaskService::Kill(const std::string& id, const std::string& exec_id, uint32_t signal, bool all) {
  std::shared_ptr<sandbox::Process> p;
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(p, FindProcess(id, exec_id));
    if (!sandbox_ || vm_killed_) {
      CASK_TRY(p->Check(ProcessOp::kKill));
      return Error::NotFound("process already finished");
    }
  }
  CASK_TRY(p->Check(ProcessOp::kKill));
  Status st = WithTeardownDeadline("kill " + id, [&] { return p->Signal(static_cast<int>(signal), all); });
  if (st.ok()) return st;
  {
    MutexLock lk(mu_);
    // The VM was destroyed meanwhile: the process is dead, as asked.
    if (vm_killed_) return Ok();
  }
  if (st.error().code() == Code::kNotFound || AgentGone(st.error()))
    return Error::NotFound("process already finished");
  return FromGuest(std::move(st).error());
}

Result<ExitInfo> TaskService::Wait(const std::string& id, const std::string& exec_id) {
  MutexLock lk(mu_);
  for (;;) {
    CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
    if (auto e = p->exit()) return ExitInfo{p->is_init() ? VmmPid() : p->pid(), e->status, e->exited_at};
    exit_cv_.wait(mu_);
  }
}

Result<sandbox::Container*> TaskService::FindContainer(const std::string& id) {
  MutexLock lk(mu_);
  CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
  return t->c.get();
}

Status TaskService::Pause(const std::string& id) {
  MutexLock op(op_mu_);
  CASK_ASSIGN_OR_RETURN(sandbox::Container * c, FindContainer(id));
  CASK_TRY(FromGuest(c->Pause()));
  Publish(TaskPausedEvent{id});
  return Ok();
}

Status TaskService::Resume(const std::string& id) {
  MutexLock op(op_mu_);
  CASK_ASSIGN_OR_RETURN(sandbox::Container * c, FindContainer(id));
  CASK_TRY(FromGuest(c->Resume()));
  Publish(TaskResumedEvent{id});
  return Ok();
}

Status TaskService::CloseIo(const std::string& id, const std::string& exec_id) {
  std::shared_ptr<sandbox::Process> p;
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(p, FindProcess(id, exec_id));
  }
  CASK_TRY(p->Check(ProcessOp::kCloseIo));
  if (p->state() == ProcessState::kStopped) return Ok();
  // With a stdin FIFO the pump closes the guest's stdin when the client
  // closes its end (after everything written was copied), which containerd
  // does before CloseIO.
  if (p->stdin_pumped()) return Ok();
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  Status st = vm->agent().CloseStdin(id, exec_id);
  if (!st.ok() && st.error().code() == Code::kNotFound) return Ok();
  return FromGuest(std::move(st));
}

Status TaskService::ResizePty(const std::string& id, const std::string& exec_id, uint32_t width, uint32_t height) {
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
    CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
    const StdioPaths& s = exec_id.empty() ? t->init_stdio : t->exec_stdio[exec_id];
    // As runc: resizing a process without a terminal does nothing (attach
    // clients resize whatever they attached to).
    if (!s.terminal) return Ok();
    if (p->state() == ProcessState::kStopped) return Ok();
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  return FromGuest(vm->agent().TtyWinResize(id, exec_id, height, width));
}

Status TaskService::Update(const std::string& id, const std::string& resources_json) {
  MutexLock op(op_mu_);
  auto res = oci::ParseLinuxResources(resources_json);
  if (!res.ok()) return FromHost(std::move(res).error().Wrap("invalid resources"));
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
    CASK_TRY(t->c->init()->Check(ProcessOp::kUpdate));
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  return FromGuest(vm->agent().UpdateContainer(id, *res));
}

Result<sys::CgroupStats> TaskService::Stats(const std::string& id) {
  {
    MutexLock lk(mu_);
    CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
    if (t->c->init()->state() == ProcessState::kStopped)
      return Error::FailedPrecondition("task " + id + " has exited");
  }
  CASK_ASSIGN_OR_RETURN(auto vm, Vm());
  auto r = vm->agent().StatsContainer(id);
  if (!r.ok()) return FromGuest(std::move(r).error());
  return r;
}

Result<ConnectInfo> TaskService::Connect(const std::string& id) {
  MutexLock lk(mu_);
  CASK_ASSIGN_OR_RETURN(Task * t, FindTask(id));
  (void)t;
  return ConnectInfo{static_cast<uint32_t>(::getpid()), VmmPid()};
}

void TaskService::Stop() {
  std::shared_ptr<sandbox::Sandbox> vm;
  {
    MutexLock lk(mu_);
    if (stopped_) return;
    stopped_ = true;
    vm = sandbox_;
    if (vm) {
      vm_killed_ = true;  // what is left is killed with the VM: 137
      for (auto& [id, t] : tasks_)
        if (t->c) t->c->MarkVmKilled();
    }
  }
  // First, without the operation lock: the VM goes (politely, within the
  // teardown timeout), so a Create or Delete stuck on the agent fails now.
  if (vm) {
    log_.Info("stopping: destroying pod VM");
    (void)WithTeardownDeadline("stop", [&] { return vm->Destroy(); });
    vm->agent().Close();
  }
  MutexLock op(op_mu_);
  std::map<std::string, std::unique_ptr<Task>> all;
  {
    MutexLock lk(mu_);
    all.swap(tasks_);
  }
  all.clear();  // each Container unwinds; the agent is closed, so nothing waits on the guest
  (void)DestroySandboxLocked();
  exit_cv_.notify_all();
}

}  // namespace cask::shim
