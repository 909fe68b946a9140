#include "lib/sandbox/container.h"

#include <algorithm>
#include <csignal>

#include "lib/oci/id.h"
#include "lib/sandbox/sandbox.h"

namespace cask::sandbox {

namespace {

using SysClock = std::chrono::system_clock;

}  // namespace

// --- Process ----------------------------------------------------------------

Process::Process(Container& owner, std::shared_ptr<Sandbox> sandbox, std::string exec_id)
    : sandbox_(std::move(sandbox)),
      container_id_(owner.id()),
      exec_id_(std::move(exec_id)),
      created_at_(std::chrono::system_clock::now()) {}

std::chrono::system_clock::time_point Process::started_at() const {
  MutexLock l(mu_);
  return started_at_.value_or(created_at_);
}

void Process::MarkStarted() {
  MutexLock l(mu_);
  if (!started_at_) started_at_ = std::chrono::system_clock::now();
}

// The Container waits for the exit delivery and destroys the pump before
// it lets go of a process.
Process::~Process() = default;

bool Process::watched() const {
  MutexLock l(mu_);
  return watched_;
}

void Process::MarkWatched() {
  MutexLock l(mu_);
  watched_ = true;
}

void Process::MarkDelivered() {
  {
    MutexLock l(mu_);
    delivered_ = true;
  }
  exit_cv_.notify_all();
}

void Process::WaitDelivered() const {
  MutexLock l(mu_);
  exit_cv_.wait(mu_, [&] {
    mu_.AssertHeld();
    return !watched_ || delivered_;
  });
}

bool Process::stdin_pumped() const {
  MutexLock l(mu_);
  return stdin_pumped_;
}

ProcessState Process::state() const {
  MutexLock l(mu_);
  return state_;
}

Status Process::Check(ProcessOp op) const {
  MutexLock l(mu_);
  CASK_TRY(Transition(state_, op, what()));
  return Ok();
}

Result<ProcessState> Process::Apply(ProcessOp op) {
  MutexLock l(mu_);
  CASK_ASSIGN_OR_RETURN(state_, Transition(state_, op, what()));
  return state_;
}

uint32_t Process::pid() const {
  MutexLock l(mu_);
  return pid_;
}

void Process::SetPid(uint32_t pid) {
  MutexLock l(mu_);
  pid_ = pid;
}

std::optional<ExitInfo> Process::exit() const {
  MutexLock l(mu_);
  return exit_;
}

std::optional<ExitInfo> Process::WaitExitFor(std::chrono::milliseconds timeout) const {
  MutexLock l(mu_);
  exit_cv_.wait_for(mu_, timeout, [&] {
    mu_.AssertHeld();
    return exit_.has_value();
  });
  return exit_;
}

ExitInfo Process::WaitExit() const {
  MutexLock l(mu_);
  exit_cv_.wait(mu_, [&] {
    mu_.AssertHeld();
    return exit_.has_value();
  });
  return *exit_;
}

bool Process::RecordExit(const ExitInfo& e) {
  {
    MutexLock l(mu_);
    if (exit_) return false;
    exit_ = e;
    if (auto s = Transition(state_, ProcessOp::kExit, what()); s.ok()) state_ = *s;
  }
  exit_cv_.notify_all();
  return true;
}

Status Process::Signal(int sig, bool all) {
  CASK_TRY(Check(ProcessOp::kKill));
  return sandbox_->agent().SignalProcess(container_id_, exec_id_, sig, all && is_init());
}

// --- Container --------------------------------------------------------------

Container::Container(std::shared_ptr<Sandbox> sandbox, ContainerOptions opts)
    : sandbox_(std::move(sandbox)), opts_(std::move(opts)), log_(opts_.log) {
  init_.reset(new Process(*this, sandbox_, ""));
}

Result<std::unique_ptr<Container>> Container::Create(std::shared_ptr<Sandbox> sandbox, ContainerOptions opts) {
  if (!sandbox) return Error::FailedPrecondition("create container " + opts.id + ": no sandbox");
  CASK_TRY(oci::ValidateId("container id", opts.id));
  if (!opts.spec.process) return Error::InvalidArgument("container " + opts.id + ": the spec has no process");
  std::unique_ptr<Container> c(new Container(std::move(sandbox), std::move(opts)));
  bool guest_created = false;
  if (Status st = c->Build(guest_created); !st.ok()) {
    // The destructor undoes whatever Build made, in reverse.
    c->log_.Error("create failed", {{"error", st.error().ToString()}});
    return std::move(st).error();
  }
  return c;
}

Status Container::Build(bool& guest_created) {
  const std::string& id = opts_.id;
  if (!opts_.rootfs_mounts.empty()) {
    CASK_ASSIGN_OR_RETURN(rootfs_, RootfsMount::Mount(sandbox_->mounts(), opts_.rootfs_mounts, opts_.rootfs_dir)
                                       .Context("mount rootfs"));
  }
  // ShareRootfs is all or nothing; from its success on, UnshareRootfs undoes
  // both shares. The rootfs is shared writable even when root.readonly is
  // set: as with runc, the container's init first creates the mount points
  // of its spec mounts in it and only then makes its root read-only (in the
  // guest). The rootfs is the container's own storage either way.
  CASK_ASSIGN_OR_RETURN(std::string guest_root,
                        sandbox_->ShareRootfs(id, opts_.rootfs_dir, /*readonly=*/false).Context("share rootfs"));
  shared_ = true;
  CASK_ASSIGN_OR_RETURN(oci::Spec guest_spec, sandbox_->ShareMounts(id, opts_.spec).Context("share mounts"));
  const bool want_stdin = opts_.init_io.stdin_fd.valid();
  CASK_ASSIGN_OR_RETURN(uint32_t guest_pid,
                        sandbox_->agent().CreateContainer(id, guest_spec, guest_root, want_stdin));
  guest_created_ = true;
  guest_created = true;
  init_->SetPid(guest_pid);
  CASK_TRY_CTX(Attach(init_, std::move(opts_.init_io)), "attach stdio");
  return Ok();
}

Container::~Container() {
  // Reverse order of creation. Each process's exit delivery and pump end
  // once the process exited or the agent closed (see the header's contract).
  std::vector<std::shared_ptr<Process>> all = Execs();
  all.push_back(init_);
  if (guest_created_ && !guest_removed_ && !sandbox_->agent().closed()) {
    // Kills what is left of the container; its exits and EOFs follow.
    Status st = sandbox_->agent().RemoveContainer(id(), /*force=*/true);
    if (!st.ok()) log_.Debug("remove container", {{"error", st.error().Bounded(512).ToString()}});
  }
  for (auto& p : all) Release(*p);
  if (shared_) {
    if (Status st = sandbox_->UnshareRootfs(id()); !st.ok())
      log_.Warn("unshare rootfs", {{"error", st.error().ToString()}});
  }
  if (Status st = rootfs_.Unmount(); !st.ok()) log_.Warn("unmount rootfs", {{"error", st.error().ToString()}});
}

void Container::Release(Process& p) {
  p.WaitDelivered();
  p.pump_.reset();
}

std::shared_ptr<Process> Container::Find(const std::string& exec_id) const {
  if (exec_id.empty()) return init_;
  MutexLock l(mu_);
  auto it = execs_.find(exec_id);
  return it == execs_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Process>> Container::Execs() const {
  MutexLock l(mu_);
  std::vector<std::shared_ptr<Process>> out;
  for (auto& [id, p] : execs_) out.push_back(p);
  return out;
}

Result<std::shared_ptr<Process>> Container::AddExec(const std::string& exec_id, oci::Process spec) {
  if (exec_id.empty()) return Error::InvalidArgument("exec id must not be empty");
  CASK_TRY(init_->Check(ProcessOp::kExec));
  MutexLock l(mu_);
  if (execs_.count(exec_id)) return Error::AlreadyExists("exec " + exec_id + " already exists in task " + id());
  std::shared_ptr<Process> p(new Process(*this, sandbox_, exec_id));
  p->exec_spec_ = std::move(spec);
  execs_[exec_id] = p;
  return p;
}

Status Container::Attach(const std::shared_ptr<Process>& p, ProcessIoFds io) {
  {
    MutexLock l(p->mu_);
    p->stdin_pumped_ = io.stdin_fd.valid();
  }
  CASK_ASSIGN_OR_RETURN(p->pump_, ProcessIoPump::Start(sandbox_->io_loop(), id(), p->exec_id(), std::move(io)));
  p->MarkWatched();
  // The pump (owned by p) and p (owned by this Container until Release,
  // which waits for the delivery) outlive the watch: raw pointers suffice.
  Process* raw = p.get();
  p->pump_->WatchExit({opts_.drain_after_exit, opts_.drain_after_loss},
                      [this, raw](ProcessIoPump::ExitReport rep) { DeliverExit(*raw, std::move(rep)); });
  return Ok();
}

void Container::DeliverExit(Process& proc, ProcessIoPump::ExitReport rep) {
  Process* p = &proc;
  const Result<ProcessExit>& r = rep.exit;
  const bool drained = rep.drained;
  ExitInfo e;
  if (r.ok()) {
    e.status = static_cast<uint32_t>(r->status);
    // The host's clock, never the guest's (which drifts, and is the
    // guest's to set): an exit is never stamped before its start.
    e.exited_at = std::max(rep.seen_at, p->started_at());
  } else {
    // The VM (or the agent) is gone: the exit is lost.
    e.status = vm_killed_.load() ? kKilledExitStatus : kLostExitStatus;
    e.exited_at = rep.seen_at;
    log_.Warn("lost the exit of a process",
              {{"exec_id", p->exec_id()}, {"error", r.error().Bounded(512).ToString()}});
  }
  // Everything the process wrote reached the host before the exit does,
  // unless the drain deadline passed (the loop's timer).
  if (!drained) log_.Warn("output still open after the process exited", {{"exec_id", p->exec_id()}});
  // Facts about the exit (an OOM kill) go out before anyone sees the exit.
  if (r.ok() && opts_.before_exit && !p->exit()) opts_.before_exit(*p);
  if (p->RecordExit(e)) {
    log_.Info("process exited", {{"exec_id", p->exec_id()}, {"exit_status", std::to_string(e.status)}});
    if (opts_.on_exit) opts_.on_exit(*p, e);
  }
  // Last: Release may let go of the Process and the Container from here on.
  p->MarkDelivered();
}

Result<uint32_t> Container::Start(Process& p, ProcessIoFds io) {
  CASK_TRY(p.Check(ProcessOp::kStart));
  AgentClient& agent = sandbox_->agent();
  p.MarkStarted();  // host time, taken before the guest can report an exit
  if (p.is_init()) {
    CASK_TRY(agent.StartContainer(id()));
  } else {
    if (!p.exec_spec_) return Error::FailedPrecondition("exec " + p.exec_id() + " has no process spec");
    std::shared_ptr<Process> sp = Find(p.exec_id());
    if (sp.get() != &p) return Error::FailedPrecondition("exec " + p.exec_id() + " is not part of task " + id());
    const bool want_stdin = io.stdin_fd.valid();
    CASK_ASSIGN_OR_RETURN(uint32_t pid, agent.ExecProcess(id(), p.exec_id(), *p.exec_spec_, want_stdin));
    p.SetPid(pid);
    if (Status st = Attach(sp, std::move(io)); !st.ok()) {
      (void)agent.SignalProcess(id(), p.exec_id(), SIGKILL);
      return std::move(st).error().Wrap("attach stdio of exec " + p.exec_id());
    }
  }
  // An exit may have been recorded already: that state stands.
  (void)p.Apply(ProcessOp::kStart);
  return p.pid();
}

Status Container::RemoveExec(const std::string& exec_id, std::chrono::milliseconds timeout) {
  std::shared_ptr<Process> p = Find(exec_id);
  if (!p || p->is_init()) return Error::NotFound("exec " + exec_id + " of task " + id() + " not found");
  CASK_TRY(p->Check(ProcessOp::kDelete));
  if (p->pump_ && !sandbox_->agent().closed() && !p->pump_->WaitDrainedFor(timeout))
    return Error::DeadlineExceeded("the output of exec " + exec_id + " did not end within " +
                                   std::to_string(timeout.count()) + " ms");
  // The guest keeps a record of the exec (exit status, stdio) until told,
  // also after a failed start: drop it so the id can be used again.
  if (!sandbox_->agent().closed()) {
    Status rm = sandbox_->agent().RemoveProcess(id(), exec_id);
    if (!rm.ok() && rm.error().code() != Code::kNotFound && rm.error().code() != Code::kUnavailable)
      return std::move(rm).error().Wrap("remove exec " + exec_id + " of task " + id());
  }
  Release(*p);
  (void)p->Apply(ProcessOp::kDelete);
  MutexLock l(mu_);
  execs_.erase(exec_id);
  return Ok();
}

Status Container::Pause() {
  CASK_TRY(init_->Check(ProcessOp::kPause));
  CASK_TRY(sandbox_->agent().PauseContainer(id()));
  (void)init_->Apply(ProcessOp::kPause);
  return Ok();
}

Status Container::Resume() {
  CASK_TRY(init_->Check(ProcessOp::kResume));
  CASK_TRY(sandbox_->agent().ResumeContainer(id()));
  (void)init_->Apply(ProcessOp::kResume);
  return Ok();
}

Status Container::Remove(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (guest_created_ && !guest_removed_ && !sandbox_->agent().closed()) {
    Status rm = sandbox_->agent().RemoveContainer(id(), /*force=*/true);
    if (!rm.ok() && rm.error().code() != Code::kNotFound && rm.error().code() != Code::kUnavailable)
      return std::move(rm).error().Wrap("remove container " + id());
  }
  guest_removed_ = true;
  std::vector<std::shared_ptr<Process>> all = Execs();
  all.push_back(init_);
  for (auto& p : all) {
    // Only processes that live in the guest get an exit.
    if (!p->watched() && !p->exit()) continue;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    left = std::max(left, std::chrono::milliseconds(0));
    if (!p->WaitExitFor(left))
      return Error::DeadlineExceeded("the guest did not report the exit of " + std::string(p->what()) + " " +
                                     (p->is_init() ? id() : p->exec_id()) + " within " +
                                     std::to_string(timeout.count()) + " ms");
    // The pump must end too before the Container may be destroyed.
    if (p->pump_ && !p->pump_->WaitDrainedFor(left))
      return Error::DeadlineExceeded("the output of " + std::string(p->what()) + " " +
                                     (p->is_init() ? id() : p->exec_id()) + " did not end within " +
                                     std::to_string(timeout.count()) + " ms");
  }
  return Ok();
}

// --- GuestDeadline ------------------------------------------------------------

GuestDeadline::GuestDeadline(std::chrono::milliseconds timeout, std::function<void()> on_expiry) {
  thread_ = std::thread([this, timeout, fn = std::move(on_expiry)] {
    {
      std::unique_lock l(mu_);
      if (cv_.wait_for(l, timeout, [&] { return done_; })) return;
      expired_ = true;
    }
    if (fn) fn();
  });
}

GuestDeadline::~GuestDeadline() {
  {
    std::lock_guard l(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool GuestDeadline::expired() const {
  std::lock_guard l(mu_);
  return expired_;
}

}  // namespace cask::sandbox
