#include "lib/pool/pool.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "lib/base/fs.h"
#include "lib/base/watchdog.h"
#include "lib/hypervisor/handover.h"
#include "lib/hypervisor/host_cgroup.h"
#include "lib/hypervisor/vm_leftovers.h"
#include "lib/net/netns.h"
#include "lib/net/rtnl.h"
#include "lib/net/tap.h"
#include "lib/sandbox/agent_client.h"
#include "lib/sandbox/shared_dir.h"
#include "lib/sandbox/vm_settings.h"

namespace cask::pool {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kKillTimeout{5000};
constexpr milliseconds kRequestTimeout{5000};
// How long a taker has to rename the VM's directory away, move its
// processes and acknowledge; the VM is killed after that.
constexpr milliseconds kAdoptTimeout{30000};
constexpr milliseconds kStopGrace{2000};
// After a failed boot, the filler waits this long (doubling up to the max).
constexpr milliseconds kRetryDelay{2000}, kMaxRetryDelay{60000};
constexpr milliseconds kLockWait{10000};

std::vector<std::string> Children(const std::string& dir, bool dirs_only) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (dirs_only && e->d_type != DT_DIR) continue;
    out.push_back(name);
  }
  ::closedir(d);
  return out;
}

// The directories that hold the pool's VM cgroups, one per hierarchy in use
// (as HostCgroup::Create places them).
std::vector<std::string> CgroupBases(const std::string& parent) {
  std::vector<std::string> out;
  auto layout = hypervisor::DetectCgroupLayout();
  if (!layout.ok()) return out;
  auto self = ReadFile("/proc/self/cgroup");
  bool absolute = !parent.empty() && parent.front() == '/';
  std::string rel = absolute ? parent.substr(1) : parent;
  auto base = [&](const std::string& mount, std::string_view controller) {
    if (mount.empty()) return;
    std::string b = mount;
    if (!absolute) {
      if (!self.ok()) return;
      auto mine = hypervisor::SelfCgroupPath(*self, controller);
      if (!mine.ok()) return;
      b = JoinPath(b, *mine);
    }
    out.push_back(JoinPath(b, rel));
  };
  base(layout->unified, "");
  if (!layout->v2()) {
    base(layout->memory, "memory");
    base(layout->cpu, "cpu");
    base(layout->pids, "pids");
  }
  return out;
}

}  // namespace

std::string VmsDir(const config::PoolConfig& p) { return JoinPath(p.state_dir, "vms"); }
std::string HoldingNetnsPath(const config::PoolConfig& p) { return JoinPath(p.state_dir, "netns"); }

uint32_t TargetSize(const config::Config& c) {
  uint32_t n = c.pool.size;
  if (c.pool.idle_memory_mib > 0 && c.hypervisor.memory_mib > 0)
    n = std::min<uint32_t>(n, c.pool.idle_memory_mib / c.hypervisor.memory_mib);
  return n;
}

Status KillLeftovers(const std::string& vms_dir, const std::string& cgroup_parent) {
  std::optional<Error> first;
  auto note = [&](Status st) {
    if (!st.ok() && !first) first = std::move(st).error();
  };
  // The recorded processes and cgroups of every VM directory.
  for (const auto& name : Children(vms_dir, true)) note(hypervisor::KillVmLeftovers(JoinPath(vms_dir, name), kKillTimeout));
  // Every cgroup below the pool's parent: an idle VM, or one whose taker
  // renamed its directory but died before moving its processes.
  std::map<std::string, std::vector<std::string>> groups;
  for (const auto& base : CgroupBases(cgroup_parent))
    for (const auto& name : Children(base, true)) groups[name].push_back(JoinPath(base, name));
  for (auto& [name, dirs] : groups) {
    auto cg = hypervisor::HostCgroup::Adopt(dirs);
    if (!cg.ok()) {
      note(std::move(cg).error());
      continue;
    }
    note(cg->Remove(kKillTimeout).Context("remove leftover pool cgroup " + name));
  }
  for (const auto& name : Children(vms_dir, false)) {
    std::string dir = JoinPath(vms_dir, name);
    Status st = sandbox::UnmountAllUnder(dir);
    if (st.ok()) st = sandbox::RemoveTreeNoMounts(dir);
    note(std::move(st).Context("remove leftover pool VM directory " + dir));
  }
  note(net::RemoveHoldingNetnsAt(JoinPath(Dirname(vms_dir), "netns")));
  if (first) return std::move(*first).Wrap("clean up after a previous pool");
  return Ok();
}

Status StartWatchdog(const std::string& vms_dir, const std::string& cgroup_parent, int lock_fd) {
  WatchdogOptions o;
  o.name = "cask pool watchdog";
  o.comm = "cask-pool-wd";
  o.close_other_fds = true;  // only the pipe and the lock are kept
  o.keep_fds = {lock_fd};
  CASK_ASSIGN_OR_RETURN(ForkedWatchdog wd,
                        ForkWatchdog(o, [&](int) { return KillLeftovers(vms_dir, cgroup_parent); }));
  // The write end lives (unused) as long as this process: never closed, so
  // the watchdog reads EOF only when the pool is gone. It is close-on-exec
  // and Spawn closes every fd it does not pass: no child keeps it.
  (void)wd.pipe.Release();
  return Ok();
}

Result<UniqueFd> LockStateDir(const config::PoolConfig& p) {
  CASK_TRY_CTX(MkdirAll(p.state_dir, 0700), "create pool.state_dir");
  std::string path = JoinPath(p.state_dir, "pool.lock");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return Error::Sys(errno, "open " + path);
  auto deadline = std::chrono::steady_clock::now() + kLockWait;
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return Error::Sys(errno, "flock " + path);
    if (std::chrono::steady_clock::now() >= deadline)
      return Error::FailedPrecondition("another pool runs on " + p.state_dir + " (" + path + " is locked)");
    std::this_thread::sleep_for(milliseconds(50));
  }
  return fd;
}

struct Pool::ReadyVm {
  std::string id, dir;
  std::unique_ptr<sandbox::SharedDir> shared;
  // The NIC's TAP in the holding namespace (QEMU has a copy of the fd; the
  // TAP lives until both are closed) and the guest NIC's MAC.
  UniqueFd tap;
  std::string tap_name, guest_mac;
  std::unique_ptr<hypervisor::Vm> vm;
};

Pool::Pool(PoolOptions o)
    : config_(std::move(o.config)),
      log_(o.log.WithSubsystem("pool")),
      vms_dir_(VmsDir(config_.pool)),
      target_(TargetSize(config_)),
      hypervisor_(std::move(o.hypervisor)) {
  if (!hypervisor_) hypervisor_ = hypervisor::NewQemu();
}

Result<std::unique_ptr<Pool>> Pool::Start(PoolOptions o) {
  std::unique_ptr<Pool> p(new Pool(std::move(o)));
  CASK_TRY(KillLeftovers(p->vms_dir_, p->config_.pool.cgroup_parent));
  CASK_TRY_CTX(MkdirAll(p->vms_dir_, 0700), "create " + p->vms_dir_);
  CASK_TRY_CTX(MkdirAll(Dirname(p->config_.pool.socket), 0700), "create the pool socket's directory");
  hypervisor::VmSettings vc = sandbox::VmSettingsFromConfig(p->config_);
  if (auto h = net::HoldingNetns::Create(HoldingNetnsPath(p->config_.pool)); h.ok()) {
    p->holding_ = std::move(*h);
  } else {
    p->log_.Warn("no holding network namespace; the pool's VMs get no NIC", {{"error", h.error().ToString()}});
  }
  p->key_ = KeyOf(vc);
  p->key_.nic = p->holding_.valid();
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd");
  p->wake_.Reset(efd);
  CASK_ASSIGN_OR_RETURN(p->listen_, Listen(p->config_.pool.socket));
  Pool* self = p.get();
  p->reaper_ = std::thread([self] { self->ReapLoop(); });
  p->filler_ = std::thread([self] { self->FillLoop(); });
  p->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  p->log_.Info("pool serving", {{"socket", p->config_.pool.socket},
                                {"size", std::to_string(p->target_)},
                                {"memory_mib", std::to_string(vc.memory_mib)},
                                {"vcpus", std::to_string(vc.vcpus)}});
  return p;
}

Pool::~Pool() {
  auto st = Stop();
  if (!st.ok()) log_.Warn("stop the pool", {{"error", st.error().ToString()}});
}

PoolCounts Pool::counts() {
  std::lock_guard<std::mutex> l(mu_);
  return PoolCounts{target_, static_cast<uint32_t>(ready_.size()), booting_, handed_over_};
}

Result<std::unique_ptr<Pool::ReadyVm>> Pool::BootOne(uint64_t n) {
  auto r = std::make_unique<ReadyVm>();
  r->id = "p" + std::to_string(::getpid()) + "-" + std::to_string(n);
  r->dir = JoinPath(vms_dir_, r->id);
  if (::mkdir(r->dir.c_str(), 0700) != 0) return Error::Sys(errno, "mkdir " + r->dir);
  auto undo = [&](Error e) -> Error {
    r->vm.reset();
    if (r->shared) (void)r->shared->Teardown();
    (void)sandbox::RemoveTreeNoMounts(r->dir);
    return std::move(e).Wrap("boot pool VM " + r->id);
  };
  auto shared = sandbox::SharedDir::Create(JoinPath(r->dir, "mounts"), JoinPath(r->dir, "shared"));
  if (!shared.ok()) return undo(std::move(shared).error());
  r->shared = std::move(*shared);
  hypervisor::VmSettings vc = sandbox::VmSettingsFromConfig(config_);
  if (holding_.valid()) {
    // One NIC on a TAP in the holding namespace, down; a random locally
    // administered MAC (the taker's agent sets the pod's).
    r->tap_name = "cpool" + std::to_string(n);
    Status made = net::RunInNetns(holding_.fd(), [&]() -> Status {
      CASK_ASSIGN_OR_RETURN(r->tap, net::CreateTap(r->tap_name));
      return Ok();
    });
    if (!made.ok()) return undo(std::move(made).error().Wrap("create the TAP " + r->tap_name));
    net::Mac mac{};
    if (::getrandom(mac.data(), mac.size(), 0) != static_cast<ssize_t>(mac.size()))
      return undo(Error::Sys(errno, "getrandom for a MAC"));
    mac[0] = static_cast<uint8_t>((mac[0] & 0xfc) | 0x02);
    r->guest_mac = net::FormatMac(mac);
    vc.nics.push_back({r->tap.get(), r->guest_mac});
  }
  vc.id = r->id;
  vc.state_dir = r->dir;
  vc.shared_dir = r->shared->path();
  vc.cgroup.enabled = true;
  vc.cgroup.parent = config_.pool.cgroup_parent;
  vc.cgroup.include_caller = false;
  auto vm = hypervisor_->Start(vc);
  if (!vm.ok()) return undo(std::move(vm).error());
  r->vm = std::move(*vm);
  auto timeout = milliseconds(config_.agent.connect_timeout_ms);
  auto fd = r->vm->ConnectAgent(timeout);
  if (!fd.ok()) return undo(std::move(fd).error());
  {
    sandbox::AgentClient agent(std::move(*fd));
    auto info = agent.WaitReady(timeout, [&] {
      std::lock_guard<std::mutex> l(mu_);
      return stopping_ || r->vm->Exited();
    });
    agent.Close();
    if (!info.ok()) return undo(std::move(info).error().Wrap("wait for the agent"));
  }
  // An idle VM waiting in the pool is what the host pays for the most.
  hypervisor::ReleaseBootFilesLogged(*r->vm, log_);
  return r;
}

void Pool::FillLoop() {
  uint64_t n = 0;
  milliseconds delay = kRetryDelay;
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stopping_ || ready_.size() < target_; });
    if (stopping_) return;
    ++booting_;
    l.unlock();
    auto t0 = std::chrono::steady_clock::now();
    auto vm = BootOne(n++);
    auto ms = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();
    l.lock();
    --booting_;
    if (!vm.ok()) {
      if (stopping_) return;
      log_.Warn("pool VM did not boot", {{"error", vm.error().ToString()}, {"retry_ms", std::to_string(delay.count())}});
      cv_.wait_for(l, delay, [&] { return stopping_; });
      delay = std::min(delay * 2, kMaxRetryDelay);
      continue;
    }
    delay = kRetryDelay;
    if (stopping_) {
      l.unlock();
      DestroyVm(std::move(*vm));
      return;
    }
    log_.Info("pool VM ready", {{"vm", (*vm)->id}, {"boot_ms", std::to_string(ms)}});
    ready_.push_back(std::move(*vm));
    cv_.notify_all();
  }
}

void Pool::DestroyVm(std::unique_ptr<ReadyVm> r) {
  if (!r) return;
  if (r->vm) {
    auto st = r->vm->Stop(kStopGrace);
    if (!st.ok()) log_.Warn("stop pool VM", {{"vm", r->id}, {"error", st.error().ToString()}});
    r->vm.reset();
  }
  if (r->shared) (void)r->shared->Teardown();
  if (PathExists(r->dir)) {
    Status st = sandbox::UnmountAllUnder(r->dir);
    if (st.ok()) st = sandbox::RemoveTreeNoMounts(r->dir);
    if (!st.ok()) log_.Warn("remove pool VM directory", {{"vm", r->id}, {"error", st.error().ToString()}});
  }
}

void Pool::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || p[1].revents != 0) return;
    int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    UniqueFd conn(c);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
      if (connections_ >= kMaxConnections) {
        (void)SendMessage(conn.get(), {{"ok", false}, {"reason", "the pool is busy"}});
        continue;
      }
      ++connections_;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread t([this, done, conn = std::move(conn)]() mutable {
      Serve(std::move(conn));
      {
        std::lock_guard<std::mutex> l(mu_);
        --connections_;
        cv_.notify_all();
      }
      *done = true;
    });
    // Joins the threads that finished; Stop joins the rest.
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (*it->second) {
        it->first.join();
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    workers_.emplace_back(std::move(t), std::move(done));
  }
}

void Pool::Serve(UniqueFd conn) {
  // Only root may talk to the pool (the socket is 0600; this also holds
  // if its mode was changed).
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) return;
  auto req = ReceiveMessage(conn.get(), kRequestTimeout);
  if (!req.ok()) return;
  const nlohmann::json& body = req->body;
  std::string op = body.contains("op") && body["op"].is_string() ? body["op"].get<std::string>() : "";
  if (op == "status") {
    PoolCounts c = counts();
    (void)SendMessage(conn.get(), {{"ok", true},
                                   {"size", c.target},
                                   {"ready", c.ready},
                                   {"booting", c.booting},
                                   {"handed_over", c.handed_over},
                                   {"key", ToJson(key_)}});
    return;
  }
  if (op == "take") {
    Take(conn.get(), body);
    return;
  }
  (void)SendMessage(conn.get(), {{"ok", false}, {"reason", "unknown op"}});
}

void Pool::Take(int conn, const nlohmann::json& request) {
  auto refuse = [&](const std::string& reason) { (void)SendMessage(conn, {{"ok", false}, {"reason", reason}}); };
  if (!request.contains("key")) return refuse("no key");
  auto wanted = KeyFromJson(request["key"]);
  if (!wanted.ok()) return refuse("bad key: " + wanted.error().message());
  std::unique_ptr<ReadyVm> r;
  std::vector<std::unique_ptr<ReadyVm>> dead;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return refuse("the pool is stopping");
    std::string diff = Mismatch(*wanted, key_);
    if (!diff.empty()) return refuse("the pool's VMs do not match: " + diff);
    // A VM that died while idle is dropped, not handed over.
    while (!ready_.empty() && !r) {
      r = std::move(ready_.front());
      ready_.pop_front();
      if (r->vm->Exited()) {
        log_.Warn("pool VM exited while idle", {{"vm", r->id}});
        dead.push_back(std::move(r));
      }
    }
    cv_.notify_all();  // the filler boots replacements
  }
  for (auto& d : dead) DestroyVm(std::move(d));
  if (!r) return refuse("no ready VM");
  auto h = r->vm->Detach();
  if (!h.ok()) {
    refuse("the VM could not be handed over");
    log_.Warn("detach pool VM", {{"vm", r->id}, {"error", h.error().ToString()}});
    DestroyVm(std::move(r));
    return;
  }
  if (r->tap) {
    // The taker gets the TAP's fd and the holding namespace's; ours close
    // with `h` whatever happens (QEMU keeps the TAP alive).
    UniqueFd ns(::fcntl(holding_.fd(), F_DUPFD_CLOEXEC, 3));
    if (ns) h->nic = hypervisor::ReadyNic{std::move(r->tap), std::move(ns), r->tap_name, r->guest_mac};
  }
  // From here the processes are owned through `h` only.
  auto kill = [&](const std::string& why) {
    log_.Warn("handover failed; killing the VM", {{"vm", r->id}, {"reason", why}});
    (void)h->vmm_pidfd.Signal(SIGKILL);
    (void)h->virtiofsd_pidfd.Signal(SIGKILL);
    (void)h->vmm_pidfd.WaitExited(kKillTimeout);
    (void)h->virtiofsd_pidfd.WaitExited(kKillTimeout);
    Reap(h->vmm.pid);
    Reap(h->virtiofsd.pid);
    if (h->cgroup.valid()) (void)h->cgroup.Remove(kKillTimeout);
    r->vm.reset();
    DestroyVm(std::move(r));
  };
  Status sent = SendMessage(conn, {{"ok", true}, {"vm", HandoverJson(*h)}, {"key", ToJson(key_)}}, HandoverFds(*h));
  if (!sent.ok()) return kill(sent.error().ToString());
  auto deadline = std::chrono::steady_clock::now() + kAdoptTimeout;
  Result<Message> ack = Error::DeadlineExceeded("no acknowledgement");
  for (;;) {
    ack = ReceiveMessage(conn, milliseconds(200));
    if (ack.ok() || ack.error().code() != Code::kDeadlineExceeded) break;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
  }
  if (!ack.ok()) return kill(ack.error().ToString());
  if (!ack->body.contains("op") || ack->body["op"] != "adopted") return kill("unexpected acknowledgement");
  // The taker moved the processes out and the directory away: what is left
  // here is an empty cgroup and this process's parenthood.
  if (h->cgroup.valid()) {
    auto st = h->cgroup.Remove(kKillTimeout);
    if (!st.ok()) log_.Warn("remove a handed-over VM's pool cgroup", {{"vm", r->id}, {"error", st.error().ToString()}});
  }
  r->shared->Release();  // the mounts went with the directory
  {
    std::lock_guard<std::mutex> l(mu_);
    released_.push_back(h->vmm.pid);
    released_.push_back(h->virtiofsd.pid);
    ++handed_over_;
  }
  log_.Info("pool VM handed over", {{"vm", r->id}, {"vmm_pid", std::to_string(h->vmm.pid)}});
}

void Pool::Reap(pid_t pid) {
  int status;
  while (::waitpid(pid, &status, WNOHANG) < 0 && errno == EINTR) {
  }
}

void Pool::ReapLoop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    std::vector<pid_t> left;
    for (pid_t pid : released_) {
      int status;
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) left.push_back(pid);
    }
    released_ = std::move(left);
    if (stopping_) return;
    cv_.wait_for(l, milliseconds(500));
  }
}

Status Pool::Stop() {
  std::deque<std::unique_ptr<ReadyVm>> idle;
  {
    std::unique_lock<std::mutex> l(mu_);
    if (stopped_) return Ok();
    stopped_ = true;
    stopping_ = true;
    cv_.notify_all();
  }
  if (wake_) {
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  if (acceptor_.joinable()) acceptor_.join();
  if (filler_.joinable()) filler_.join();
  std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> workers;
  {
    std::unique_lock<std::mutex> l(mu_);
    workers = std::move(workers_);
  }
  for (auto& w : workers) w.first.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    idle = std::move(ready_);
  }
  for (auto& r : idle) DestroyVm(std::move(r));
  if (reaper_.joinable()) reaper_.join();
  listen_.Reset();
  (void)::unlink(config_.pool.socket.c_str());
  auto st = KillLeftovers(vms_dir_, config_.pool.cgroup_parent);
  if (auto removed = holding_.Remove(); !removed.ok() && st.ok()) st = std::move(removed);
  log_.Info("pool stopped");
  return st;
}

}  // namespace cask::pool
