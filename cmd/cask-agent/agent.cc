#include "cmd/cask-agent/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "lib/base/fs.h"
#include "lib/oci/id.h"
#include "lib/oci/parse.h"
#include "lib/sys/mount_options.h"
#include "lib/sys/pidfd.h"

#ifndef CASK_VERSION
#define CASK_VERSION "dev"
#endif

namespace cask::agent {

// One process of a container: the init (exec_id "") or an exec.
struct Agent::Process {
  std::string container_id;
  std::string exec_id;
  pid_t pid = -1;
  bool terminal = false;
  sys::Pidfd pidfd;  // signals never hit a recycled pid; read and reset under mu

  // Guarded by the container's op_mu.
  std::optional<container::PendingProcess> pending;

  std::mutex mu;  // guards everything below
  std::condition_variable cv;
  State state = State::kCreated;  // changed only through Transition
  ProcessExit exit;
  // The event stream: credit per output stream (bytes GetEvents may still
  // send), whether each stream's EOF and the exit were sent.
  size_t credit[2] = {kInitialOutputCredit, kInitialOutputCredit};
  uint64_t sent[2] = {0, 0};  // output bytes sent per stream (for total grants)
  bool eof_sent[2] = {false, false};
  bool exit_sent = false;
  // Guarded by Agent::ev_mu_: queued in Agent::ready_.
  bool queued = false;
  std::shared_ptr<UniqueFd> stdin_fd;    // pipe writer, or the pty master
  std::shared_ptr<UniqueFd> pty_master;  // terminal processes only
  std::shared_ptr<StreamPump> out;       // stdout, or the pty output
  std::shared_ptr<StreamPump> err;       // stderr (no terminal)

  std::string Name() const {
    return exec_id.empty() ? "init process of container " + container_id
                           : "process " + exec_id + " of container " + container_id;
  }
};

struct Agent::ContainerRec {
  std::string id;
  Mutex op_mu;  // serialises operations on `c`; taken before Agent::mu_
  std::unique_ptr<container::Container> c;
  std::shared_ptr<Process> init;
  State state GUARDED_BY(op_mu) = State::kCreated;  // changed only through Transition
  // Guarded by Agent::mu_. A null entry reserves an exec id being created.
  std::map<std::string, std::shared_ptr<Process>> execs;
};

const char* StateName(State s) {
  switch (s) {
    case State::kCreated: return "created";
    case State::kRunning: return "running";
    case State::kStopped: return "stopped";
    case State::kRemoved: return "removed";
  }
  return "unknown";
}

Status Transition(State* state, State to, std::string_view what) {
  const State from = *state;
  bool ok = false;
  switch (to) {
    case State::kCreated: ok = false; break;
    case State::kRunning: ok = from == State::kCreated; break;
    case State::kStopped: ok = from == State::kCreated || from == State::kRunning; break;
    case State::kRemoved: ok = from != State::kRemoved; break;
  }
  if (!ok) {
    const char* verb = to == State::kRunning   ? "start"
                       : to == State::kStopped ? "stop"
                       : to == State::kRemoved ? "remove"
                                               : "create";
    return Error::FailedPrecondition(std::string("cannot ") + verb + " " + std::string(what) + " in " +
                                     StateName(from) + " state");
  }
  *state = to;
  return Ok();
}

namespace {

size_t StreamIndex(StreamKind k) { return k == StreamKind::kStdout ? 0 : 1; }

bool IsMountPoint(const std::string& path) {
  struct stat st, parent;
  if (::stat(path.c_str(), &st) != 0 || ::stat((path + "/..").c_str(), &parent) != 0) return false;
  return st.st_dev != parent.st_dev || st.st_ino == parent.st_ino;
}

// The coalescer's options, with min_bytes at most half a stream's buffer:
// a held stream must not fill its buffer, which would pause its producer
// for nothing.
ReplyCoalescer::Options CoalescingOptions(const AgentOptions& o) {
  ReplyCoalescer::Options c = o.reply_coalescing;
  c.min_bytes = std::min(c.min_bytes, std::max<size_t>(o.stream_buffer_bytes / 2, 1));
  return c;
}

Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return Error::Sys(errno, "set O_NONBLOCK");
  return Ok();
}

// Reserves an id in a set under a mutex; releases it on scope exit.
class Reservation {
 public:
  Reservation(Mutex& mu, std::function<void()> release) : mu_(mu), release_(std::move(release)) {}
  ~Reservation() {
    if (!release_) return;
    MutexLock lock(mu_);
    release_();
  }
  void Commit() { release_ = nullptr; }

 private:
  Mutex& mu_;
  std::function<void()> release_;
};

}  // namespace

Agent::Agent(AgentOptions opts, Reaper* reaper, OomWatcher* oom, Logger log)
    : opts_(std::move(opts)),
      reaper_(reaper),
      oom_(oom),
      log_(std::move(log)),
      started_(std::chrono::steady_clock::now()),
      io_loop_(IoLoop::Start()),
      coalescer_(CoalescingOptions(opts_)) {
  if (!io_loop_.ok()) log_.Error("no stdio loop: processes cannot be created", {{"error", io_loop_.error().ToString()}});
  oom_->SetListener([this] { MarkOomReady(); });
}

Agent::~Agent() {
  oom_->SetListener(nullptr);
  DestroyAllContainers();
  std::lock_guard<std::mutex> lock(power_mu_);
  if (power_off_thread_.joinable()) power_off_thread_.join();
}

AgentInfo Agent::Check() const {
  AgentInfo info;
  info.version = CASK_VERSION;
  struct utsname u;
  if (::uname(&u) == 0) info.kernel_release = u.release;
  struct timespec ts;
  if (::clock_gettime(CLOCK_BOOTTIME, &ts) == 0)
    info.uptime_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  if (auto status = ReadFile("/proc/self/status"); status.ok()) {
    for (std::string_view rest = *status; !rest.empty();) {
      size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      auto value = [&](std::string_view key) -> std::optional<uint64_t> {
        if (line.substr(0, key.size()) != key) return std::nullopt;
        return std::strtoull(std::string(line.substr(key.size())).c_str(), nullptr, 10);
      };
      if (auto v = value("Threads:")) info.threads = static_cast<uint32_t>(*v);
      if (auto v = value("VmRSS:")) info.rss_bytes = *v * 1024;  // "VmRSS:  1234 kB"
    }
  }
  return info;
}

Status Agent::SetupSandbox(const SandboxSetup& setup) {
  if (!setup.hostname.empty()) {
    if (setup.hostname.size() > 64) return Error::InvalidArgument("hostname is longer than 64 characters");
    if (::sethostname(setup.hostname.data(), setup.hostname.size()) != 0)
      return Error::Sys(errno, "sethostname " + setup.hostname);
  }
  if (!setup.resolv_conf.empty()) {
    CASK_TRY(MkdirAll(opts_.etc_dir));
    CASK_TRY(WriteFileAtomic(JoinPath(opts_.etc_dir, "resolv.conf"), setup.resolv_conf, 0644));
  }
  for (size_t i = 0; i < setup.mounts.size(); ++i) {
    const GuestMount& m = setup.mounts[i];
    std::string where = "mounts[" + std::to_string(i) + "]";
    if (m.target.empty() || m.target.front() != '/')
      return Error::InvalidArgument(where + ".target \"" + m.target + "\" is not an absolute path");
    if (m.fstype.empty()) return Error::InvalidArgument(where + ".fstype is empty");
    CASK_TRY_CTX(MkdirAll(m.target), where);
    if (IsMountPoint(m.target)) {
      log_.Info("guest mount already present", {{"target", m.target}, {"fstype", m.fstype}});
      continue;
    }
    CASK_ASSIGN_OR_RETURN(sys::MountOptions f, sys::ParseMountOptions(m.options).Context(where));
    if (::mount(m.source.c_str(), m.target.c_str(), m.fstype.c_str(), f.flags,
                f.data.empty() ? nullptr : f.data.c_str()) != 0)
      return Error::Sys(errno, "mount " + m.fstype + " " + m.source + " on " + m.target).Wrap(where);
    for (unsigned long prop : f.propagation) {
      if (::mount(nullptr, m.target.c_str(), nullptr, prop, nullptr) != 0)
        return Error::Sys(errno, "set propagation of " + m.target).Wrap(where);
    }
    log_.Info("guest mount", {{"source", m.source}, {"target", m.target}, {"fstype", m.fstype}});
  }
  return Ok();
}

Status Agent::SetTime(int64_t realtime_ns) {
  if (realtime_ns <= 0) return Error::InvalidArgument("SetTime: time must be positive, got " + std::to_string(realtime_ns));
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(realtime_ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(realtime_ns % 1'000'000'000);
  if (opts_.set_clock) return opts_.set_clock(ts);
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) return Error::Sys(errno, "clock_settime(CLOCK_REALTIME)");
  return Ok();
}

void Agent::DestroyAllContainers() {
  std::map<std::string, std::shared_ptr<ContainerRec>> all;
  {
    MutexLock lock(mu_);
    all.swap(containers_);
  }
  for (auto& [id, rec] : all) {
    MutexLock op(rec->op_mu);
    if (rec->state == State::kRemoved) continue;
    (void)rec->c->KillAll(SIGKILL);
    Status st = DestroyContainer(*rec);
    if (!st.ok()) log_.Warn("destroy container", {{"container", id}, {"error", st.error().ToString()}});
  }
}

Status Agent::DestroySandbox() {
  DestroyAllContainers();
  std::lock_guard<std::mutex> lock(power_mu_);
  if (opts_.power_off && !power_off_thread_.joinable()) {
    log_.Info("powering off", {{"delay_ms", std::to_string(opts_.power_off_delay.count())}});
    power_off_thread_ = std::thread([fn = opts_.power_off, delay = opts_.power_off_delay] {
      std::this_thread::sleep_for(delay);
      fn();
    });
  }
  return Ok();
}

Result<std::shared_ptr<Agent::ContainerRec>> Agent::FindContainer(const std::string& id) const {
  MutexLock lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return Error::NotFound("container " + id + " not found");
  return it->second;
}

Result<std::shared_ptr<Agent::Process>> Agent::FindProcess(const std::string& id, const std::string& exec_id) const {
  MutexLock lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return Error::NotFound("container " + id + " not found");
  if (exec_id.empty()) return it->second->init;
  auto e = it->second->execs.find(exec_id);
  if (e == it->second->execs.end() || !e->second)
    return Error::NotFound("process " + exec_id + " not found in container " + id);
  return e->second;
}

Result<std::shared_ptr<Agent::Process>> Agent::AdoptProcess(const std::string& id, const std::string& exec_id,
                                                            uint64_t mark, container::PendingProcess pending,
                                                            container::ProcessIo io, bool terminal) {
  auto p = std::make_shared<Process>();
  p->container_id = id;
  p->exec_id = exec_id;
  p->pid = pending.pid();
  p->terminal = terminal;
  if (auto pidfd = sys::Pidfd::Open(p->pid); pidfd.ok()) p->pidfd = std::move(*pidfd);
  // An error return before the Watch below destroys `pending`, which kills
  // the process; the reaper drops its exit as an orphan's.
  if (!io_loop_.ok()) return io_loop_.error();
  std::weak_ptr<Process> weak = p;
  auto ready = [this, weak] {
    if (auto sp = weak.lock()) MarkReady(sp);
  };
  if (terminal) {
    if (!io.pty_master) return Error::Internal("container library returned no pty master for a terminal process");
    int dup = ::fcntl(io.pty_master.get(), F_DUPFD_CLOEXEC, 3);
    if (dup < 0) return Error::Sys(errno, "dup pty master");
    CASK_ASSIGN_OR_RETURN(auto pump, StreamPump::Start(**io_loop_, UniqueFd(dup), opts_.stream_buffer_bytes, ready,
                                                                 0, opts_.stream_short_read_delay));
    p->out = std::move(pump);
    p->pty_master = std::make_shared<UniqueFd>(std::move(io.pty_master));
    p->stdin_fd = p->pty_master;
  } else {
    if (io.stdout_r) {
      CASK_ASSIGN_OR_RETURN(auto pump,
                            StreamPump::Start(**io_loop_, std::move(io.stdout_r), opts_.stream_buffer_bytes, ready,
                                              opts_.stream_pipe_bytes, opts_.stream_short_read_delay));
      p->out = std::move(pump);
    }
    if (io.stderr_r) {
      CASK_ASSIGN_OR_RETURN(auto pump,
                            StreamPump::Start(**io_loop_, std::move(io.stderr_r), opts_.stream_buffer_bytes, ready,
                                              opts_.stream_pipe_bytes, opts_.stream_short_read_delay));
      p->err = std::move(pump);
    }
    if (io.stdin_w) {
      CASK_TRY(SetNonBlocking(io.stdin_w.get()));
      p->stdin_fd = std::make_shared<UniqueFd>(std::move(io.stdin_w));
    }
  }
  p->pending.emplace(std::move(pending));

  Logger plog = log_.With("container", id).With("exec", exec_id).With("pid", std::to_string(p->pid));
  reaper_->Watch(p->pid, mark, [this, p, plog](const ExitEvent& ev) {
    {
      std::lock_guard<std::mutex> lock(p->mu);
      Status st = Transition(&p->state, State::kStopped, p->Name());
      if (!st.ok()) plog.Warn("exit of a process not alive", {{"error", st.error().ToString()}});
      p->exit = ProcessExit{ev.status, ev.exited_at_ns};
      p->cv.notify_all();
    }
    plog.Info("process exited", {{"status", std::to_string(ev.status)}});
    MarkReady(p);
  });

  return p;
}

Result<pid_t> Agent::StartProcess(Process& p) {
  auto started = p.pending->Start();
  p.pending.reset();
  std::unique_lock<std::mutex> lock(p.mu);
  // Already stopped when the reaper was first (it exited at once): stays so.
  if (started.ok()) {
    if (p.state == State::kCreated) CASK_TRY(Transition(&p.state, State::kRunning, p.Name()));
    return p.pid;
  }
  // The process exits (127) right after a failed exec; let the reaper see
  // it so that the host's next WaitProcess/RemoveContainer finds it stopped.
  p.cv.wait_for(lock, std::chrono::seconds(2), [&] { return p.state == State::kStopped; });
  if (p.state == State::kCreated) (void)Transition(&p.state, State::kRunning, p.Name());
  return std::move(started).error();
}

Result<pid_t> Agent::CreateContainer(const std::string& id, std::string_view spec_json, const std::string& rootfs,
                                     bool open_stdin) {
  CASK_TRY(oci::ValidateId("container id", id));
  if (rootfs.empty() || rootfs.front() != '/')
    return Error::InvalidArgument("container " + id + ": rootfs_path \"" + rootfs + "\" is not an absolute path");
  {
    MutexLock lock(mu_);
    if (containers_.count(id) || creating_.count(id)) return Error::AlreadyExists("container " + id + " already exists");
    creating_.insert(id);
  }
  // Runs under mu_ (Reservation takes it).
  Reservation reservation(mu_, [this, id] {
    mu_.AssertHeld();
    creating_.erase(id);
  });

  CASK_ASSIGN_OR_RETURN(oci::Spec spec, oci::ParseSpec(spec_json).Context("container " + id + ": oci spec"));
  if (!spec.process) return Error::InvalidArgument("container " + id + ": oci spec: process: missing");
  bool terminal = spec.process->terminal;

  container::CreateOptions copts;
  const std::map<std::string, std::string> annotations = spec.annotations;
  CASK_ASSIGN_OR_RETURN(copts.resolve_namespace, pods_.ResolverFor(id, spec).Context("container " + id));
  copts.id = id;
  copts.spec = std::move(spec);
  copts.rootfs = rootfs;
  copts.open_stdin = open_stdin;
  copts.cgroup_root = opts_.cgroup_root;
  container::ProcessIo io;
  container::PendingProcess pending;
  uint64_t mark = reaper_->Mark();
  CASK_ASSIGN_OR_RETURN(std::unique_ptr<container::Container> c,
                        container::Container::Create(std::move(copts), &io, &pending).Context("create container " + id));

  auto rec = std::make_shared<ContainerRec>();
  rec->id = id;
  rec->c = std::move(c);
  auto init = AdoptProcess(id, "", mark, std::move(pending), std::move(io), terminal);
  if (!init.ok()) {
    (void)rec->c->Destroy();
    return std::move(init).error().Wrap("create container " + id);
  }
  rec->init = *init;
  pid_t pid = rec->init->pid;
  if (Status pod = pods_.Register(id, annotations, pid); !pod.ok())
    log_.Warn("pod sandbox not recorded", {{"container", id}, {"error", pod.error().ToString()}});

  Status watched = oom_->Watch(id, rec->c->memory_events_path());
  if (!watched.ok()) log_.Warn("no OOM events for container", {{"container", id}, {"error", watched.error().ToString()}});

  {
    MutexLock lock(mu_);
    creating_.erase(id);
    containers_[id] = rec;
  }
  reservation.Commit();
  log_.Info("container created", {{"container", id}, {"pid", std::to_string(pid)}, {"rootfs", rootfs}});
  return pid;
}

Result<pid_t> Agent::StartContainer(const std::string& id) {
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  SyncContainerState(*rec);
  Process& p = *rec->init;
  {
    State next = rec->state;
    CASK_TRY(Transition(&next, State::kRunning, "container " + id));
  }
  if (!p.pending) return Error::FailedPrecondition("container " + id + " is already started");
  auto started = StartProcess(p);
  // Started, or failed to exec (then stopped at once): either way it ran.
  (void)Transition(&rec->state, State::kRunning, "container " + id);
  SyncContainerState(*rec);
  if (!started.ok()) return std::move(started).error().Wrap("start container " + id);
  pid_t pid = *started;
  log_.Info("container started", {{"container", id}, {"pid", std::to_string(pid)}});
  return pid;
}

void Agent::CloseProcesses(ContainerRec& rec) {
  std::vector<std::shared_ptr<Process>> procs = {rec.init};
  {
    MutexLock lock(mu_);
    for (auto& [eid, p] : rec.execs)
      if (p) procs.push_back(p);
  }
  for (auto& p : procs) {
    p->pending.reset();  // kills a never-started process
    // Destroyed after the lock: a pump's destructor waits for its IoLoop
    // handler, which may be waiting for Agent locks itself.
    std::shared_ptr<StreamPump> out, err;
    std::lock_guard<std::mutex> lock(p->mu);
    if (p->out) p->out->buffer().Abort();
    if (p->err) p->err->buffer().Abort();
    out.swap(p->out);  // a blocked reader keeps its pump until it returns
    err.swap(p->err);
    p->stdin_fd.reset();
    p->pty_master.reset();
    p->pidfd.Reset();  // the record may outlive this in the event queue; its fds must not
  }
}

Status Agent::DestroyContainer(ContainerRec& rec) {
  // Pending processes first: they are killed while certainly unreaped.
  rec.init->pending.reset();
  {
    MutexLock lock(mu_);
    for (auto& [eid, p] : rec.execs)
      if (p) p->pending.reset();
  }
  CASK_TRY_CTX(rec.c->Destroy(), "destroy container " + rec.id);
  CloseProcesses(rec);
  oom_->Unwatch(rec.id);
  pods_.Forget(rec.id);
  return Transition(&rec.state, State::kRemoved, "container " + rec.id);
}

void Agent::SyncContainerState(ContainerRec& rec) {
  rec.op_mu.AssertHeld();
  bool init_stopped;
  {
    std::lock_guard<std::mutex> lock(rec.init->mu);
    init_stopped = rec.init->state == State::kStopped;
  }
  if (init_stopped && (rec.state == State::kCreated || rec.state == State::kRunning))
    (void)Transition(&rec.state, State::kStopped, "container " + rec.id);
}

Status Agent::RemoveContainer(const std::string& id, bool force) {
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  SyncContainerState(*rec);
  bool running = rec->state == State::kRunning;
  if (running && !force)
    return Error::FailedPrecondition("container " + id + " is running; stop it first or remove with force");
  if (force) {
    Status killed = rec->c->KillAll(SIGKILL);
    if (!killed.ok()) log_.Debug("kill before remove", {{"container", id}, {"error", killed.error().ToString()}});
  }
  CASK_TRY(DestroyContainer(*rec));
  {
    MutexLock lock(mu_);
    auto it = containers_.find(id);
    if (it != containers_.end() && it->second == rec) containers_.erase(it);
  }
  log_.Info("container removed", {{"container", id}});
  return Ok();
}

Status Agent::RemoveProcess(const std::string& id, const std::string& exec_id) {
  CASK_TRY(oci::ValidateId("exec id", exec_id));
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  std::shared_ptr<Process> p;
  {
    MutexLock lock(mu_);
    auto it = rec->execs.find(exec_id);
    // A null entry is an ExecProcess still under way: not a process yet.
    if (rec->state == State::kRemoved || it == rec->execs.end() || !it->second)
      return Error::NotFound("process " + exec_id + " not found in container " + id);
    p = it->second;
  }
  std::shared_ptr<StreamPump> out, err;  // destroyed after the lock (see CloseProcesses)
  {
    std::lock_guard<std::mutex> lock(p->mu);
    if (p->state != State::kStopped)
      return Error::FailedPrecondition("process " + exec_id + " in container " + id + " is still running");
    CASK_TRY(Transition(&p->state, State::kRemoved, p->Name()));
    // Its stdio goes now; a reader blocked on a pump keeps it until it returns.
    if (p->out) p->out->buffer().Abort();
    if (p->err) p->err->buffer().Abort();
    out.swap(p->out);
    err.swap(p->err);
    p->stdin_fd.reset();
    p->pty_master.reset();
    p->pidfd.Reset();  // the record may outlive this in the event queue; its fds must not
  }
  {
    MutexLock lock(mu_);
    auto it = rec->execs.find(exec_id);
    if (it != rec->execs.end() && it->second == p) rec->execs.erase(it);
  }
  log_.Info("process removed", {{"container", id}, {"exec", exec_id}});
  return Ok();
}

Result<pid_t> Agent::ExecProcess(const std::string& id, const std::string& exec_id, std::string_view process_json,
                                 bool open_stdin) {
  CASK_TRY(oci::ValidateId("exec id", exec_id));
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  {
    MutexLock lock(mu_);
    if (rec->execs.count(exec_id))
      return Error::AlreadyExists("process " + exec_id + " already exists in container " + id);
    rec->execs[exec_id] = nullptr;
  }
  Reservation reservation(mu_, [rec, exec_id] { rec->execs.erase(exec_id); });

  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  SyncContainerState(*rec);
  if (rec->state != State::kRunning)
    return Error::FailedPrecondition("cannot exec in container " + id + " in " + StateName(rec->state) + " state");
  CASK_ASSIGN_OR_RETURN(oci::Process proc,
                        oci::ParseProcess(process_json).Context("exec " + exec_id + " in container " + id));
  container::ProcessIo io;
  uint64_t mark = reaper_->Mark();
  CASK_ASSIGN_OR_RETURN(container::PendingProcess pending,
                        rec->c->Exec(proc, open_stdin, &io).Context("exec " + exec_id + " in container " + id));
  CASK_ASSIGN_OR_RETURN(auto p, AdoptProcess(id, exec_id, mark, std::move(pending), std::move(io), proc.terminal)
                                    .Context("exec " + exec_id + " in container " + id));
  {
    MutexLock lock(mu_);
    rec->execs[exec_id] = p;
  }
  reservation.Commit();
  // The process stays listed even when its exec fails: it stops with 127
  // and the host may still wait for it.
  CASK_ASSIGN_OR_RETURN(pid_t pid, StartProcess(*p).Context("exec " + exec_id + " in container " + id));
  log_.Info("process started", {{"container", id}, {"exec", exec_id}, {"pid", std::to_string(pid)}});
  return pid;
}

Status Agent::SignalProcess(const std::string& id, const std::string& exec_id, int sig, bool all) {
  if (sig <= 0 || sig > 64) return Error::InvalidArgument("signal " + std::to_string(sig) + " is out of range");
  if (all) {
    if (!exec_id.empty()) return Error::InvalidArgument("signal to all processes names an exec id");
    CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
    MutexLock op(rec->op_mu);
    if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
    return rec->c->KillAll(sig).Context("signal all processes of container " + id);
  }
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  std::lock_guard<std::mutex> lock(p->mu);
  if (p->state == State::kStopped || p->state == State::kRemoved)
    return Error::NotFound(p->Name() + " has already exited");
  int err = 0;
  if (p->pidfd) {
    Status st = p->pidfd.Signal(sig);
    if (!st.ok()) err = st.error().sys_errno();
  } else if (::kill(p->pid, sig) != 0) {
    err = errno;
  }
  if (err == ESRCH) return Error::NotFound(p->Name() + " has already exited");
  if (err != 0) return Error::Sys(err, "signal " + std::to_string(sig) + " to " + p->Name());
  return Ok();
}

Result<ProcessExit> Agent::WaitProcess(const std::string& id, const std::string& exec_id, const WaitLimits& limits) {
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  std::unique_lock<std::mutex> lock(p->mu);
  CASK_TRY_CTX(limits.Wait(lock, p->cv, [&] { return p->state == State::kStopped || p->state == State::kRemoved; }),
               "wait for " + p->Name());
  return p->exit;
}

Result<std::vector<pid_t>> Agent::ListProcesses(const std::string& id) {
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  return rec->c->Pids().Context("list processes of container " + id);
}

Result<size_t> Agent::WriteStdin(const std::string& id, const std::string& exec_id, std::string_view data) {
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  std::shared_ptr<UniqueFd> fd;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    fd = p->stdin_fd;
  }
  if (!fd || !*fd) return Error::FailedPrecondition("stdin of " + p->Name() + " is not open");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd->get(), data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;  // the pipe is full: the host retries later
    if (done > 0) break;
    if (n < 0 && (errno == EPIPE || errno == EIO))
      return Error::FailedPrecondition("stdin of " + p->Name() + " is closed (the process exited)");
    return Error::Sys(errno, "write stdin of " + p->Name());
  }
  return done;
}

Status Agent::CloseStdin(const std::string& id, const std::string& exec_id) {
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  std::lock_guard<std::mutex> lock(p->mu);
  if (p->terminal) {
    // A terminal has no separate stdin to close: send the EOF character,
    // which ends a read on the slave side in canonical mode.
    if (p->pty_master && *p->pty_master) {
      [[maybe_unused]] ssize_t n = ::write(p->pty_master->get(), "\x04", 1);
    }
    return Ok();
  }
  p->stdin_fd.reset();  // closes once no WriteStdin is using it
  return Ok();
}

Result<StreamChunk> Agent::ReadStream(const std::string& id, const std::string& exec_id, StreamKind kind,
                                      size_t max_len, const WaitLimits& limits) {
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  std::shared_ptr<StreamPump> pump;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    pump = kind == StreamKind::kStdout ? p->out : p->err;
  }
  if (!pump) return StreamChunk{"", true};  // a terminal's stderr, or a removed process
  size_t n = max_len == 0 ? kMaxReadLen : std::min(max_len, kMaxReadLen);
  return pump->buffer().Read(n, limits);
}

Status Agent::ResizeTty(const std::string& id, const std::string& exec_id, uint32_t rows, uint32_t cols) {
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  std::lock_guard<std::mutex> lock(p->mu);
  if (!p->terminal) return Error::FailedPrecondition(p->Name() + " has no terminal");
  if (!p->pty_master || !*p->pty_master) return Error::FailedPrecondition("terminal of " + p->Name() + " is closed");
  return container::ResizePty(p->pty_master->get(), rows, cols).Context("resize terminal of " + p->Name());
}

Result<sys::CgroupStats> Agent::StatsContainer(const std::string& id) {
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  return rec->c->Stats().Context("stats of container " + id);
}

Status Agent::PauseContainer(const std::string& id) {
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  SyncContainerState(*rec);
  if (rec->state != State::kRunning)
    return Error::FailedPrecondition("cannot pause container " + id + " in " + StateName(rec->state) + " state");
  return rec->c->Pause().Context("pause container " + id);
}

Status Agent::ResumeContainer(const std::string& id) {
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  return rec->c->Resume().Context("resume container " + id);
}

Status Agent::UpdateContainer(const std::string& id, std::string_view resources_json) {
  CASK_ASSIGN_OR_RETURN(oci::LinuxResources r,
                        oci::ParseLinuxResources(resources_json).Context("update container " + id));
  CASK_ASSIGN_OR_RETURN(auto rec, FindContainer(id));
  MutexLock op(rec->op_mu);
  if (rec->state == State::kRemoved) return Error::NotFound("container " + id + " not found");
  return rec->c->Update(r).Context("update container " + id);
}

Result<std::string> Agent::NextOomEvent(const WaitLimits& limits) { return oom_->Next(limits); }

WaitLimits Agent::Limits(std::optional<std::chrono::steady_clock::time_point> deadline,
                         std::shared_ptr<const std::atomic<bool>> connection_gone) const {
  WaitLimits l;
  l.deadline = deadline;
  uint64_t epoch = cancel_epoch_.load();
  l.cancelled = [this, epoch, gone = std::move(connection_gone)] {
    return cancel_epoch_.load() != epoch || (gone && gone->load());
  };
  return l;
}

void Agent::CancelBlockingCalls() {
  cancel_epoch_.fetch_add(1);
  std::vector<std::shared_ptr<Process>> procs;
  {
    MutexLock lock(mu_);
    for (auto& [id, rec] : containers_) {
      procs.push_back(rec->init);
      for (auto& [eid, p] : rec->execs)
        if (p) procs.push_back(p);
    }
  }
  for (auto& p : procs) {
    std::lock_guard<std::mutex> lock(p->mu);
    p->cv.notify_all();
    if (p->out) p->out->buffer().Interrupt();
    if (p->err) p->err->buffer().Interrupt();
  }
  oom_->Interrupt();
  {
    MutexLock lock(ev_mu_);
    ev_cv_.notify_all();
  }
}

void Agent::MarkReady(const std::shared_ptr<Process>& p) {
  MutexLock lock(ev_mu_);
  if (!p->queued) {
    p->queued = true;
    ready_.push_back(p);
  }
  ev_cv_.notify_all();
}

void Agent::MarkOomReady() {
  MutexLock lock(ev_mu_);
  oom_ready_ = true;
  ev_cv_.notify_all();
}

EventBatch Agent::BuildBatchLocked(size_t budget) {
  EventBatch b;
  if (oom_ready_) {
    oom_ready_ = false;
    while (b.oom_container_ids.size() < kMaxOomPerBatch) {
      auto id = oom_->TryNext();
      if (!id) break;
      if (std::find(b.oom_container_ids.begin(), b.oom_container_ids.end(), *id) == b.oom_container_ids.end())
        b.oom_container_ids.push_back(std::move(*id));
    }
    if (b.oom_container_ids.size() == kMaxOomPerBatch) oom_ready_ = true;  // maybe more
  }
  std::vector<std::shared_ptr<Process>> todo;
  todo.swap(ready_);
  std::vector<std::shared_ptr<Process>> again;
  for (auto& p : todo) {
    p->queued = false;
    if (b.exits.size() >= kMaxExitsPerBatch) {
      again.push_back(p);
      continue;
    }
    bool more = false;
    std::lock_guard<std::mutex> lock(p->mu);
    for (StreamKind kind : {StreamKind::kStdout, StreamKind::kStderr}) {
      const size_t i = StreamIndex(kind);
      if (p->eof_sent[i]) continue;
      const std::shared_ptr<StreamPump>& pump = kind == StreamKind::kStdout ? p->out : p->err;
      BlockChunk c;
      if (!pump) {
        c.eof = true;  // no such stream (a terminal's stderr), or the process was removed
      } else {
        c = pump->buffer().TryReadBlocks(std::min(p->credit[i], budget));
        const size_t n = c.size();
        p->credit[i] -= n;
        p->sent[i] += n;
        budget -= n;
        // Still readable: more data than credit or budget allowed.
        if (!c.eof && pump->buffer().Readable() && p->credit[i] > 0) more = true;
      }
      if (c.blocks.empty() && !c.eof) continue;
      if (c.eof) p->eof_sent[i] = true;
      if (c.blocks.empty()) c.blocks.emplace_back();
      for (size_t k = 0; k < c.blocks.size(); ++k)
        b.output.push_back(OutputEvent{p->container_id, p->exec_id, kind, std::move(c.blocks[k]),
                                       c.eof && k + 1 == c.blocks.size()});
    }
    if ((p->state == State::kStopped || p->state == State::kRemoved) && !p->exit_sent &&
        p->state != State::kCreated) {
      p->exit_sent = true;
      b.exits.push_back(ExitReport{p->container_id, p->exec_id, p->exit});
    }
    if (more) again.push_back(p);
  }
  for (auto& p : again) {
    if (!p->queued) {
      p->queued = true;
      ready_.push_back(p);
    }
  }
  return b;
}

ReplyCoalescer::Pending Agent::PendingLocked(size_t budget) {
  ReplyCoalescer::Pending pending;
  pending.limit = budget;
  pending.urgent = oom_ready_;
  for (const auto& p : ready_) {
    if (pending.urgent) break;
    std::lock_guard<std::mutex> lock(p->mu);
    if ((p->state == State::kStopped || p->state == State::kRemoved) && !p->exit_sent) {
      pending.urgent = true;
      break;
    }
    for (StreamKind kind : {StreamKind::kStdout, StreamKind::kStderr}) {
      const size_t i = StreamIndex(kind);
      if (p->eof_sent[i]) continue;
      const std::shared_ptr<StreamPump>& pump = kind == StreamKind::kStdout ? p->out : p->err;
      if (!pump || pump->buffer().Ended()) {  // an end of stream to report, with what is left
        pending.urgent = true;
        break;
      }
      const size_t buffered = pump->buffer().size();
      if (buffered == 0 || p->credit[i] == 0) continue;
      // Out of credit: nothing more could join this stream's output.
      if (buffered >= p->credit[i]) pending.urgent = true;
      pending.output_bytes += std::min(buffered, p->credit[i]);
    }
  }
  return pending;
}

Result<std::shared_ptr<const EventBatch>> Agent::GetEvents(uint64_t ack, std::chrono::milliseconds wait, size_t max_output,
                                    const WaitLimits& limits) {
  using Clock = std::chrono::steady_clock;
  const size_t budget = max_output == 0 ? kMaxReadLen : std::min(max_output, kMaxReadLen);
  auto deadline = Clock::now() + std::min(wait, kMaxEventWait);
  if (limits.deadline && *limits.deadline < deadline) deadline = *limits.deadline;
  MutexLock lock(ev_mu_);
  const uint64_t gen = ++poll_gen_;
  ev_cv_.notify_all();  // an older poll still waiting ends now
  // The host did not get the latest batch: send it again.
  if (last_batch_->seq != 0 && ack != last_batch_->seq) return last_batch_;
  for (;;) {
    const Clock::time_point now = Clock::now();
    // Little output and nothing urgent: held (bounded) for more to join
    // it, but never past this poll's deadline (a poll of wait 0 answers at
    // once).
    const ReplyCoalescer::Decision d = coalescer_.Decide(PendingLocked(budget), now);
    if (!d.hold || now >= deadline) {
      EventBatch b = BuildBatchLocked(budget);
      if (!b.empty()) {
        coalescer_.Sent();
        b.seq = last_batch_->seq + 1;
        last_batch_ = std::make_shared<const EventBatch>(std::move(b));
        return last_batch_;
      }
    }
    if (limits.IsCancelled()) return Error::Unavailable("call cancelled: the host connection is gone");
    if (gen != poll_gen_ || now >= deadline) return std::make_shared<const EventBatch>();
    ev_cv_.wait_until(ev_mu_, d.hold ? std::min(d.until, deadline) : deadline);
  }
}

Status Agent::GrantOutput(const std::string& id, const std::string& exec_id, StreamKind stream, uint32_t bytes,
                          uint64_t total) {
  CASK_ASSIGN_OR_RETURN(auto p, FindProcess(id, exec_id));
  {
    std::lock_guard<std::mutex> lock(p->mu);
    const size_t i = StreamIndex(stream);
    size_t& c = p->credit[i];
    if (total == 0) {
      c = std::min(c + bytes, kMaxOutputCredit);
    } else if (total > p->sent[i]) {
      c = std::max<size_t>(c, std::min<uint64_t>(total - p->sent[i], kMaxOutputCredit));
    }
  }
  MarkReady(p);
  return Ok();
}

}  // namespace cask::agent
