#include "lib/hypervisor/qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/hypervisor/host_cgroup.h"
#include "lib/hypervisor/process_identity.h"
#include "lib/hypervisor/capped_log.h"
#include "lib/hypervisor/handover.h"
#include "lib/hypervisor/qemu_cmdline.h"
#include "lib/hypervisor/qmp.h"
#include "lib/hypervisor/sockets.h"
#include "lib/hypervisor/virtiofsd.h"
#include "lib/hypervisor/vm_control.h"
#include "lib/hypervisor/vm_leftovers.h"
#include "lib/sys/mountinfo.h"
#include "lib/sys/pidfd.h"

namespace cask::hypervisor {
namespace {

using std::chrono::milliseconds;

// From <linux/vhost.h>, which does not compile as C++ (virtio_ring.h).
constexpr unsigned long kVhostVsockSetGuestCid = _IOW(0xAF, 0x60, uint64_t);

constexpr size_t kStartErrorLogBytes = 4096;  // of qemu.log, quoted in a start error
constexpr size_t kExitTailBytes = 2048;       // of console.log, quoted when the VM died
constexpr size_t kMaxUnixPath = 107;          // sizeof(sockaddr_un::sun_path) - 1

// Bounds on what the guest (console) and virtiofsd (stderr) make the host
// keep: the last kConsoleKeepBytes of the console in memory, at most twice
// that in console.log; the same for virtiofsd.log with kVirtiofsdLogKeepBytes.
// Together with qemu.log and the sockets a pod's state dir stays far below
// 4 MiB however much the guest writes.
constexpr size_t kConsoleKeepBytes = 256 * 1024;
constexpr size_t kVirtiofsdLogKeepBytes = 64 * 1024;
// QEMU's own stderr (qemu.log): a guest can make QEMU warn (device errors),
// so it is capped the same way.
constexpr size_t kQemuLogKeepBytes = 64 * 1024;
// Console lines forwarded to the shim's log and the pump's per-stream
// bound: PumpVmLogs (capped_log.h).
// The console's fd number inside QEMU (3 is the vhost-vsock fd).
constexpr int kConsoleFdInQemu = 4;
// NIC fds inside QEMU: TAP i at 10 + 2i, its vhost-net fd at 11 + 2i.
constexpr int kFirstNicFdInQemu = 10;
constexpr size_t kMaxNics = 8;

bool ValidMac(const std::string& m) {
  if (m.size() != 17) return false;
  for (size_t i = 0; i < m.size(); ++i) {
    char c = m[i];
    if (i % 3 == 2) {
      if (c != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}


// NOT_FOUND naming the path and the config key.
Status CheckFile(const std::string& path, const char* key, bool executable) {
  if (path.empty()) return Error::InvalidArgument(std::string(key) + " is empty");
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return Error::NotFound(std::string(key) + ": " + path + " does not exist");
    return Error::Sys(errno, std::string(key) + ": stat " + path);
  }
  if (!S_ISREG(st.st_mode)) return Error::InvalidArgument(std::string(key) + ": " + path + " is not a regular file");
  if (executable && ::access(path.c_str(), X_OK) != 0)
    return Error(Code::kPermissionDenied, std::string(key) + ": " + path + " is not executable");
  return Ok();
}

// True if a mount point is at or below `dir` (per /proc/self/mountinfo).
Result<bool> HasMountsUnder(const std::string& dir) {
  CASK_ASSIGN_OR_RETURN(auto mounts, sys::ReadMountInfo());
  return !sys::MountPointsUnder(mounts, dir).empty();
}

// "<id>-<8 hex digits of FNV-1a of the state dir>": sandbox ids are unique
// within one state dir only, and two runtimes (containerd instances, test
// runs) may share a parent cgroup.
std::string CgroupNameFor(const std::string& id, const std::string& state_dir) {
  uint32_t h = 2166136261u;
  for (unsigned char c : Dirname(state_dir)) h = (h ^ c) * 16777619u;
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", h);
  return id + "-" + hex;
}

class QemuVm final : public Vm {
 public:
  QemuVm(const VmSettings& cfg, Channel channel)
      : id_(cfg.id),
        state_dir_(cfg.state_dir),
        channel_(channel),
        agent_sock_(JoinPath(cfg.state_dir, "agent.sock")),
        qmp_sock_(JoinPath(cfg.state_dir, "qmp.sock")),
        fs_sock_(JoinPath(cfg.state_dir, "virtiofsd.sock")),
        console_log_(JoinPath(cfg.state_dir, "console.log")),
        qemu_log_(JoinPath(cfg.state_dir, "qemu.log")),
        fs_log_(JoinPath(cfg.state_dir, "virtiofsd.log")),
        host_processes_(JoinPath(cfg.state_dir, kHostProcessesFile)),
        console_logger_(cfg.console_logger),
        boot_files_(BootFiles(cfg)) {}

  ~QemuVm() override { (void)Stop(kDefaultStopGrace); }

  // Creates the state dir, starts virtiofsd and QEMU, waits for QMP. On
  // error the caller runs Stop() to unwind.
  Status Boot(const VmSettings& cfg, qemu::QemuCommand cmd, bool with_fs);

  pid_t pid() const override { return pid_; }
  Channel channel() const override { return channel_; }
  Result<UniqueFd> ConnectAgent(milliseconds timeout) override;
  Status Stop(milliseconds grace) override;
  bool Exited() override;
  std::string console_log_path() const override { return console_log_; }
  std::string ConsoleTail(size_t max_bytes) const override {
    if (logs_closed_ || !console_) return "";
    return console_->Tail(max_bytes);
  }
  Status Pause() override { return RunQmpCommand(qmp_, qmp_mu_, stop_, "stop"); }
  Status Resume() override { return RunQmpCommand(qmp_, qmp_mu_, stop_, "cont"); }
  Result<VmHandover> Detach() override;
  Result<PageOutReport> ReleaseBootFiles() override {
    std::lock_guard<std::mutex> l(stop_.mu);  // pidfd_ is reset by Stop, moved by Detach
    if (stop_.stopping || !pidfd_) return Error::FailedPrecondition("VM " + id_ + " is stopped or handed over");
    return PageOutFileMappings(pidfd_, boot_files_);
  }

 private:
  // Waits for QEMU to exit until the deadline; true if it did.
  bool WaitQemuExit(Clock::time_point deadline);
  std::string ExitDescription();
  Status RemoveFiles();
  Status StopLocked(milliseconds grace);
  Status CreateCgroup(const VmSettings& cfg);
  // Boot's steps. Creates the state dir (or checks it is one), removes
  // stale sockets and opens the console log.
  Status PrepareStateDir();
  // Starts virtiofsd on the shared dir (in the pod cgroup) and records it.
  Status StartFileServer(const VmSettings& cfg, const std::vector<int>& cgroup_procs_fds);
  // Waits for QEMU's QMP handshake (every device realised, the guest
  // running) up to kQemuStartTimeout, then starts the virtiofsd watch;
  // QEMU's own error when it exits meanwhile.
  Status ConnectQmp();
  // Writes <state_dir>/host-processes with what runs now.
  Status RecordHostProcesses();
  // Watches virtiofsd: a VM whose file server died has lost its root
  // filesystem, so QEMU is killed and the VM reads as exited.
  void StartFsWatch();
  void StopFsWatch();

  // The log pump: one thread that drains the console socket and
  // virtiofsd's stderr into their CappedLogs (and console lines into the
  // logger, rate-limited) until StopPump. Always reading is what keeps a
  // guest that floods its console from blocking on a full socket.
  Status StartPump();
  // QEMU's stderr after it exited during startup: waits (briefly) for the
  // pump to reach EOF, then the tail of the capped log.
  std::string QemuStartLog();
  void Pump();
  void StopPump();

  const std::string id_, state_dir_;
  const Channel channel_;
  const std::string agent_sock_, qmp_sock_, fs_sock_, console_log_, qemu_log_, fs_log_, host_processes_;
  const Logger console_logger_;
  const std::vector<std::string> boot_files_;  // kernel, initrd (ReleaseBootFiles)

  // Made in Boot before any process starts, fixed afterwards; the pump
  // thread owns the reading ends while it runs.
  std::unique_ptr<CappedLog> console_;
  std::unique_ptr<CappedLog> fs_log_cap_;
  std::unique_ptr<CappedLog> qemu_log_cap_;
  UniqueFd console_host_;  // host end of the console socket pair
  UniqueFd fs_stderr_;     // read end of virtiofsd's stderr
  UniqueFd qemu_stderr_;   // read end of QEMU's stderr
  // Set by the pump once QEMU's stderr reached EOF (QEMU exited): its
  // startup error is then complete in qemu_log_cap_.
  std::atomic<bool> qemu_stderr_eof_{false};
  UniqueFd pump_wake_;     // eventfd: StopPump writes it
  std::thread pump_;
  std::atomic<bool> logs_closed_{false};  // set by Stop: ConsoleTail is empty
  bool created_dir_ = false;
  uint32_t guest_cid_ = 0;
  pid_t pid_ = -1;
  sys::Pidfd pidfd_;  // QEMU's, for waiting on its exit
  ProcessIdentity qemu_id_, fsd_id_;
  HostCgroup cgroup_;  // the pod's host cgroup (empty when disabled)

  sys::Pidfd fs_pidfd_;     // virtiofsd's, for the watch
  UniqueFd fs_watch_stop_;  // eventfd: Stop ends the watch
  std::thread fs_watch_;

  mutable std::mutex proc_mu_;  // qemu_, qemu_status_, virtiofsd_
  ChildProcess qemu_;
  std::optional<int> qemu_status_;  // -1: reaped elsewhere (ECHILD)
  ChildProcess virtiofsd_;

  std::mutex qmp_mu_;
  QmpClient qmp_;

  StopOnce stop_;  // Stop and Detach; stop_.stopping makes ConnectAgent and QMP calls fail
};

// Picks a free guest CID on an open /dev/vhost-vsock (the kernel refuses one
// in use with EADDRINUSE) and returns it; QEMU gets the fd as vhostfd and
// sets the same CID again.
Result<uint32_t> ReserveGuestCid(int vhost_fd) {
  std::random_device rd;
  std::mt19937 gen(rd());
  // CIDs 0-2 are reserved (hypervisor, local, host); keep within 32 bits.
  std::uniform_int_distribution<uint32_t> dist(3, 0x7fffffff);
  for (int attempt = 0; attempt < 64; attempt++) {
    uint64_t cid = dist(gen);
    if (::ioctl(vhost_fd, kVhostVsockSetGuestCid, &cid) == 0) return static_cast<uint32_t>(cid);
    if (errno != EADDRINUSE) return Error::Sys(errno, "ioctl VHOST_VSOCK_SET_GUEST_CID");
  }
  return Error::ResourceExhausted("no free vsock guest CID after 64 attempts");
}

// The NICs for QEMU: TAP fds at 10, 12, ... and, where /dev/vhost-net
// opens, their vhost-net fds at 11, 13, ... (kept open in `vhost_net` until
// QEMU has started).
Status AttachNics(const std::vector<NicSettings>& nics, qemu::QemuCommand& cmd, SpawnOptions& so,
                  std::vector<UniqueFd>& vhost_net) {
  if (nics.size() > kMaxNics)
    return Error::InvalidArgument(std::to_string(nics.size()) + " NICs; at most " + std::to_string(kMaxNics));
  for (size_t i = 0; i < nics.size(); ++i) {
    const NicSettings& nic = nics[i];
    if (nic.tap_fd < 0) return Error::InvalidArgument("NIC " + std::to_string(i) + " has no TAP fd");
    if (!ValidMac(nic.mac)) return Error::InvalidArgument("NIC " + std::to_string(i) + ": bad MAC \"" + nic.mac + "\"");
    qemu::NetOptions n;
    n.tap_fd = kFirstNicFdInQemu + 2 * static_cast<int>(i);
    n.mac = nic.mac;
    so.extra_fds[n.tap_fd] = nic.tap_fd;
    UniqueFd vh(::open("/dev/vhost-net", O_RDWR | O_CLOEXEC));
    if (vh) {
      n.vhost_fd = n.tap_fd + 1;
      so.extra_fds[n.vhost_fd] = vh.get();
      vhost_net.push_back(std::move(vh));
    }
    cmd.nics.push_back(std::move(n));
  }
  return Ok();
}

Status QemuVm::Boot(const VmSettings& cfg, qemu::QemuCommand cmd, bool with_fs) {
  CASK_TRY(PrepareStateDir());

  std::vector<UniqueFd> cgroup_fds;
  std::vector<int> cgroup_fd_numbers;
  if (cfg.cgroup.enabled) {
    CASK_TRY(CreateCgroup(cfg));
    CASK_ASSIGN_OR_RETURN(cgroup_fds, cgroup_.OpenProcsFiles());
    for (const auto& fd : cgroup_fds) cgroup_fd_numbers.push_back(fd.get());
  }

  if (with_fs) CASK_TRY(StartFileServer(cfg, cgroup_fd_numbers));

  SpawnOptions so;
  so.cgroup_procs_fds = cgroup_fd_numbers;
  UniqueFd vhost;
  if (channel_ == Channel::kVsock) {
    vhost.Reset(::open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC));
    if (!vhost) return Error::Sys(errno, "open /dev/vhost-vsock (agent.channel = vsock)");
    CASK_ASSIGN_OR_RETURN(guest_cid_, ReserveGuestCid(vhost.get()));
    constexpr int kVhostFdInQemu = 3;
    so.extra_fds[kVhostFdInQemu] = vhost.get();
    cmd.agent.guest_cid = guest_cid_;
    cmd.agent.vhost_fd = kVhostFdInQemu;
  }
  std::vector<UniqueFd> vhost_net;
  CASK_TRY(AttachNics(cfg.nics, cmd, so, vhost_net));
  // QEMU's stderr: a pipe the log pump drains into a capped qemu.log.
  CASK_ASSIGN_OR_RETURN(qemu_log_cap_, CappedLog::Create(qemu_log_, kQemuLogKeepBytes));
  int errp[2];
  if (::pipe2(errp, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe for qemu's stderr");
  qemu_stderr_.Reset(errp[0]);
  UniqueFd log(errp[1]);
  if (::fcntl(qemu_stderr_.get(), F_SETFL, O_NONBLOCK) != 0)
    return Error::Sys(errno, "make qemu's stderr non-blocking");
  // The console: a socket pair, QEMU's end passed as an fd (no path, no
  // connect race, nothing lost before the host reads).
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return Error::Sys(errno, "socketpair for the guest console");
  console_host_.Reset(pair[0]);
  UniqueFd console_qemu(pair[1]);
  if (::fcntl(console_host_.get(), F_SETFL, O_NONBLOCK) != 0)
    return Error::Sys(errno, "make the console socket non-blocking");
  // The host never writes to the guest console; the write side stays open
  // all the same (QEMU takes an EOF as a disconnect and drops the output).
  so.extra_fds[kConsoleFdInQemu] = console_qemu.get();
  cmd.console.socket_fd = kConsoleFdInQemu;
  CASK_TRY(StartPump());
  so.stderr_fd = log.get();
  auto argv = qemu::BuildQemuArgv(cmd);
  CASK_ASSIGN_OR_RETURN(ChildProcess q, Spawn(argv, so).Context("start " + cmd.binary));
  pid_ = q.pid();
  {
    std::lock_guard<std::mutex> l(proc_mu_);
    qemu_ = std::move(q);
  }
  log.Reset();
  vhost.Reset();
  console_qemu.Reset();
  cgroup_fds.clear();
  // QEMU is an unreaped child: its pid cannot have been reused.
  CASK_ASSIGN_OR_RETURN(pidfd_, sys::Pidfd::Open(pid_).Context("pidfd of qemu"));
  CASK_ASSIGN_OR_RETURN(qemu_id_, IdentityOf(pid_).Context("identify qemu"));
  CASK_TRY(RecordHostProcesses());

  return ConnectQmp();
}

Status QemuVm::PrepareStateDir() {
  struct stat st;
  if (::stat(state_dir_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Error::InvalidArgument("state dir " + state_dir_ + " is not a directory");
  } else {
    CASK_TRY_CTX(MkdirAll(Dirname(state_dir_), 0711), "create the parent of the VM state dir");
    if (::mkdir(state_dir_.c_str(), 0700) != 0) return Error::Sys(errno, "mkdir " + state_dir_);
    created_dir_ = true;
  }
  for (const auto* p : {&agent_sock_, &qmp_sock_, &fs_sock_}) {
    if (::unlink(p->c_str()) != 0 && errno != ENOENT) return Error::Sys(errno, "remove stale socket " + *p);
  }
  CASK_ASSIGN_OR_RETURN(console_, CappedLog::Create(console_log_, kConsoleKeepBytes));
  return Ok();
}

Status QemuVm::StartFileServer(const VmSettings& cfg, const std::vector<int>& cgroup_procs_fds) {
  VirtiofsdOptions fo;
  fo.binary = cfg.virtiofsd_path;
  fo.socket_path = fs_sock_;
  fo.source = cfg.shared_dir;
  fo.cache = cfg.virtiofs_cache;
  CASK_ASSIGN_OR_RETURN(fs_log_cap_, CappedLog::Create(fs_log_, kVirtiofsdLogKeepBytes));
  fo.log = fs_log_cap_.get();
  fo.cgroup_procs_fds = cgroup_procs_fds;
  CASK_ASSIGN_OR_RETURN(VirtiofsdProcess fsd, StartVirtiofsd(fo, kVirtiofsdStartTimeout));
  fs_stderr_ = std::move(fsd.stderr_pipe);
  pid_t fsd_pid = fsd.child.pid();
  {
    std::lock_guard<std::mutex> l(proc_mu_);
    virtiofsd_ = std::move(fsd.child);
  }
  CASK_ASSIGN_OR_RETURN(fsd_id_, IdentityOf(fsd_pid).Context("identify virtiofsd"));
  CASK_ASSIGN_OR_RETURN(fs_pidfd_, sys::Pidfd::Open(fsd_pid).Context("pidfd of virtiofsd"));
  return RecordHostProcesses();
}

Status QemuVm::ConnectQmp() {
  // QEMU serves QMP only once the machine is built, so a handshake means
  // every device was realised and the guest is running.
  auto deadline = Clock::now() + kQemuStartTimeout;
  for (;;) {
    if (Exited())
      return Error::Internal("qemu exited during startup (" + ExitDescription() + "): " +
                             Trimmed(QemuStartLog()));
    auto fd = ConnectUnixOnce(qmp_sock_);
    if (fd.ok()) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      auto client = QmpClient::Handshake(std::move(*fd), std::max(left, milliseconds(1)));
      if (client.ok()) {
        std::lock_guard<std::mutex> l(qmp_mu_);
        qmp_ = std::move(*client);
        if (fs_pidfd_) StartFsWatch();
        return Ok();
      }
      // A reset handshake usually means QEMU is exiting on an error: give
      // it a moment so that its own message is what the caller sees.
      if (WaitQemuExit(Clock::now() + milliseconds(2000)))
        return Error::Internal("qemu exited during startup (" + ExitDescription() + "): " +
                               Trimmed(QemuStartLog()));
      return std::move(client).error().Wrap("connect to QMP " + qmp_sock_);
    }
    if (fd.error().code() != Code::kNotFound && fd.error().code() != Code::kUnavailable)
      return std::move(fd).error();
    if (Clock::now() >= deadline)
      return Error::DeadlineExceeded("qemu did not answer on " + qmp_sock_ + " within " +
                                     std::to_string(kQemuStartTimeout.count()) + " ms");
    std::this_thread::sleep_for(milliseconds(5));
  }
}

Status QemuVm::CreateCgroup(const VmSettings& cfg) {
  CASK_ASSIGN_OR_RETURN(CgroupLayout layout, DetectCgroupLayout());
  CgroupLimits limits;
  if (cfg.cgroup.memory_overhead_mib > 0)
    limits.memory_bytes = (uint64_t{cfg.memory_mib} + cfg.cgroup.memory_overhead_mib) << 20;
  limits.cpu_quota_us = uint64_t{cfg.cgroup.cpu_quota_cores} * limits.cpu_period_us;
  limits.pids_max = cfg.cgroup.pids_max;
  CASK_ASSIGN_OR_RETURN(cgroup_, HostCgroup::Create(layout, cfg.cgroup.parent, CgroupNameFor(id_, state_dir_), limits)
                                     .Context("create the pod's host cgroup (runtime.sandbox_cgroup)"));
  CASK_TRY(RecordHostProcesses());
  if (cfg.cgroup.include_caller)
    CASK_TRY_CTX(cgroup_.Add(::getpid()), "move the shim into the pod's cgroup (runtime.cgroup_shim)");
  return Ok();
}

Status QemuVm::RecordHostProcesses() {
  HostProcesses hp;
  if (qemu_id_.pid > 0) hp.vmm = qemu_id_;
  if (fsd_id_.pid > 0) hp.virtiofsd = fsd_id_;
  hp.cgroup_dirs = cgroup_.dirs();
  return WriteHostProcesses(state_dir_, hp).Context("record the VM's host processes");
}

void QemuVm::StartFsWatch() {
  fs_watch_stop_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!fs_watch_stop_) return;  // no watch; Stop still cleans up
  fs_watch_ = std::thread([this] {
    pollfd p[2] = {{fs_pidfd_.get(), POLLIN, 0}, {fs_watch_stop_.get(), POLLIN, 0}};
    for (;;) {
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) return;
      if (p[0].revents & POLLIN) break;
    }
    if (stop_.stopping) return;
    // QEMU would keep the guest running with a dead virtio-fs device:
    // its tasks would hang on their root filesystem. End it.
    (void)pidfd_.Signal(SIGKILL);
  });
}

void QemuVm::StopFsWatch() {
  if (!fs_watch_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fs_watch_stop_.get(), &one, sizeof one);
  fs_watch_.join();
}

bool QemuVm::Exited() {
  std::lock_guard<std::mutex> l(proc_mu_);
  if (qemu_status_) return true;
  if (!qemu_.valid()) return pid_ > 0;  // never started counts as not running only before Boot
  auto r = qemu_.TryWait();
  if (!r.ok()) {
    // ECHILD: someone else reaped it. Forget the pid so that it is never
    // signalled again (it may be reused).
    qemu_.Release();
    qemu_status_ = -1;
    return true;
  }
  if (r->has_value()) {
    qemu_status_ = **r;
    return true;
  }
  return false;
}

std::string QemuVm::ExitDescription() {
  std::lock_guard<std::mutex> l(proc_mu_);
  if (!qemu_status_) return "running";
  if (*qemu_status_ < 0) return "status unknown";
  return "status " + std::to_string(*qemu_status_);
}

bool QemuVm::WaitQemuExit(Clock::time_point deadline) {
  for (;;) {
    if (Exited()) return true;
    int left = MillisLeft(deadline);
    if (left == 0) return false;
    if (pidfd_) {
      (void)pidfd_.WaitExited(milliseconds(std::min(left, 100)));
    } else {
      std::this_thread::sleep_for(milliseconds(std::min(left, 5)));
    }
  }
}

Result<UniqueFd> QemuVm::ConnectAgent(milliseconds timeout) {
  return ConnectAgentChannel(channel_ == Channel::kSerial, agent_sock_, guest_cid_, timeout,
                             [this](const std::string& what) -> std::optional<Error> {
                               if (stop_.stopping) return Error::FailedPrecondition("the VM is stopped");
                               if (!Exited()) return std::nullopt;
                               return Error::Unavailable("VM exited (qemu " + ExitDescription() +
                                                         ") before the agent channel " + what +
                                                         " connected; console: " + Trimmed(ConsoleTail(kExitTailBytes)));
                             });
}

Status QemuVm::Stop(milliseconds grace) {
  return stop_.Run([&] { return StopLocked(grace); });
}

Status QemuVm::StopLocked(milliseconds grace) {
  auto deadline = Clock::now() + grace;
  std::optional<Error> first;
  auto note = [&](Status st) {
    if (!st.ok() && !first) first = std::move(st).error();
  };
  StopFsWatch();

  bool have_qemu;
  {
    std::lock_guard<std::mutex> l(proc_mu_);
    have_qemu = qemu_.valid();
  }
  if (have_qemu && !Exited()) {
    {
      std::lock_guard<std::mutex> l(qmp_mu_);
      if (qmp_.connected() && grace.count() > 0) {
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        (void)qmp_.Quit(std::max(left, milliseconds(1)));  // failure: SIGKILL below
      }
    }
    if (!WaitQemuExit(deadline)) {
      std::lock_guard<std::mutex> l(proc_mu_);
      if (qemu_.valid()) {
        (void)qemu_.Signal(SIGKILL);
        auto r = qemu_.Wait();
        qemu_status_ = r.ok() ? *r : -1;
        if (!r.ok()) qemu_.Release();
      }
    }
  }
  {
    std::lock_guard<std::mutex> l(qmp_mu_);
    qmp_.Close();
  }
  pidfd_.Reset();

  {
    std::lock_guard<std::mutex> l(proc_mu_);
    if (virtiofsd_.valid()) {
      // It exits by itself once QEMU is gone; give it a moment.
      auto r = virtiofsd_.WaitFor(milliseconds(1000));
      if (!r.ok() || !r->has_value()) {
        auto t = virtiofsd_.Terminate(milliseconds(1000));
        if (!t.ok()) note(std::move(t).error().Wrap("stop virtiofsd"));
      }
    }
  }
  fs_pidfd_.Reset();
  // Anything else in the pod's cgroup (nothing, normally) goes with it.
  if (cgroup_.valid()) note(cgroup_.Remove(milliseconds(2000)).Context("remove the pod's cgroup"));
  StopPump();
  note(RemoveFiles());
  if (first) return std::move(*first).Wrap("stop VM " + id_);
  return Ok();
}

Result<VmHandover> QemuVm::Detach() {
  std::lock_guard<std::mutex> l(stop_.mu);
  if (stop_.result) return Error::FailedPrecondition("the VM is stopped");
  if (Exited()) return Error::Unavailable("VM " + id_ + " exited (qemu " + ExitDescription() + ")");
  if (!pidfd_ || !fs_pidfd_) return Error::FailedPrecondition("VM " + id_ + " has no virtiofsd to hand over");
  // From here on the Vm gives up: its destructor and Stop leave everything.
  stop_.stopping = true;
  stop_.result = Ok();
  StopFsWatch();
  // Ends the pump without closing its fds (StopPump would): they go along.
  if (pump_.joinable()) {
    uint64_t one = 1;
    (void)!::write(pump_wake_.get(), &one, sizeof one);
    pump_.join();
  }
  VmHandover h;
  h.state_dir = state_dir_;
  h.channel = channel_;
  h.guest_cid = guest_cid_;
  h.vmm = qemu_id_;
  h.virtiofsd = fsd_id_;
  h.vmm_pidfd = std::move(pidfd_);
  h.virtiofsd_pidfd = std::move(fs_pidfd_);
  {
    std::lock_guard<std::mutex> q(qmp_mu_);
    h.qmp = qmp_.Release();
  }
  h.console = std::move(console_host_);
  h.qemu_stderr = std::move(qemu_stderr_);
  h.virtiofsd_stderr = std::move(fs_stderr_);
  if (console_) h.console_tail = console_->Tail(kHandoverConsoleTailBytes);
  h.cgroup = std::move(cgroup_);
  {
    std::lock_guard<std::mutex> p(proc_mu_);
    // Still our children (the caller reaps them once they exit), no longer
    // owned here.
    (void)qemu_.Release();
    (void)virtiofsd_.Release();
    qemu_status_ = -1;
  }
  logs_closed_ = true;
  created_dir_ = false;
  return h;
}

Status QemuVm::RemoveFiles() {
  std::optional<Error> first;
  logs_closed_ = true;
  if (console_) console_->RemoveFile();
  if (fs_log_cap_) fs_log_cap_->RemoveFile();
  if (qemu_log_cap_) qemu_log_cap_->RemoveFile();
  for (const auto* p : {&agent_sock_, &qmp_sock_, &fs_sock_, &console_log_, &qemu_log_, &fs_log_, &host_processes_}) {
    if (::unlink(p->c_str()) != 0 && errno != ENOENT && !first) first = Error::Sys(errno, "remove " + *p);
  }
  if (first) return std::move(*first);
  if (created_dir_) {
    CASK_ASSIGN_OR_RETURN(bool mounted, HasMountsUnder(state_dir_));
    if (mounted)
      return Error::FailedPrecondition("not removing VM state dir " + state_dir_ + ": something is mounted in it");
    CASK_TRY(RemoveAll(state_dir_));
    created_dir_ = false;
  } else if (::rmdir(state_dir_.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST) {
    return Error::Sys(errno, "rmdir " + state_dir_);
  }
  return Ok();
}

// A user name that exists, or "<uid>:<gid>" (both numbers, not 0).
Status ValidateRunas(const std::string& runas) {
  size_t colon = runas.find(':');
  if (colon != std::string::npos) {
    auto number = [](std::string_view s) -> long {
      if (s.empty() || s.size() > 10) return -1;
      long v = 0;
      for (char c : s) {
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
      }
      return v;
    };
    long uid = number(std::string_view(runas).substr(0, colon)), gid = number(std::string_view(runas).substr(colon + 1));
    if (uid <= 0 || gid <= 0 || uid > 0xfffffffe || gid > 0xfffffffe)
      return Error::InvalidArgument("hypervisor.runas: \"" + runas + "\" is not <uid>:<gid> with non-zero numbers");
    return Ok();
  }
  passwd pw{}, *res = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(runas.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr)
    return Error::NotFound("hypervisor.runas: no user \"" + runas + "\" on this host");
  if (pw.pw_uid == 0) return Error::InvalidArgument("hypervisor.runas: user \"" + runas + "\" is root");
  return Ok();
}

Status QemuVm::StartPump() {
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd for the log pump");
  pump_wake_.Reset(efd);
  pump_ = std::thread([this] { Pump(); });
  return Ok();
}

void QemuVm::Pump() {
  PumpVmLogs(pump_wake_.get(), console_host_.get(), console_.get(), console_logger_,
             {{fs_stderr_.get(), fs_log_cap_.get(), nullptr}, {qemu_stderr_.get(), qemu_log_cap_.get(), &qemu_stderr_eof_}});
}

void QemuVm::StopPump() {
  if (!pump_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(pump_wake_.get(), &one, sizeof one);
  pump_.join();
  console_host_.Reset();
  fs_stderr_.Reset();
  qemu_stderr_.Reset();
}

std::string QemuVm::QemuStartLog() {
  auto until = Clock::now() + milliseconds(2000);
  while (!qemu_stderr_eof_ && pump_.joinable() && Clock::now() < until)
    std::this_thread::sleep_for(milliseconds(5));
  return qemu_log_cap_ ? qemu_log_cap_->Tail(kStartErrorLogBytes) : std::string();
}

class QemuHypervisor final : public Hypervisor {
 public:
  explicit QemuHypervisor(std::optional<HostProbe> host) : host_(std::move(host)) {}
  Result<std::unique_ptr<Vm>> Start(const VmSettings& cfg) override;

 private:
  std::optional<HostProbe> host_;  // fixed facts (tests); probed per Start otherwise
};

Result<std::unique_ptr<Vm>> QemuHypervisor::Start(const VmSettings& cfg) {
  if (cfg.id.empty()) return Error::InvalidArgument("VM id is empty");
  if (cfg.state_dir.empty() || cfg.state_dir.front() != '/')
    return Error::InvalidArgument("VM state dir must be an absolute path, got \"" + cfg.state_dir + "\"");
  if (cfg.state_dir.size() + std::string_view("/virtiofsd.sock").size() > kMaxUnixPath)
    return Error::InvalidArgument("VM state dir " + cfg.state_dir + " is too long for unix socket paths (max " +
                                  std::to_string(kMaxUnixPath) + " bytes with \"/virtiofsd.sock\")");
  CASK_TRY(CheckFile(cfg.qemu_path, "hypervisor.path", /*executable=*/true));
  CASK_TRY(CheckFile(cfg.kernel, "hypervisor.kernel", false));
  CASK_TRY(CheckFile(cfg.initrd, "hypervisor.initrd", false));
  CASK_ASSIGN_OR_RETURN(qemu::MachineType machine, qemu::ParseMachineType(cfg.machine_type));
  if (cfg.vcpus < 1 || cfg.vcpus > 64)
    return Error::InvalidArgument("hypervisor.vcpus: must be between 1 and 64, got " + std::to_string(cfg.vcpus));
  if (cfg.memory_mib < 64 || cfg.memory_mib > 65536)
    return Error::InvalidArgument("hypervisor.memory_mib: must be between 64 and 65536, got " +
                                  std::to_string(cfg.memory_mib));
  if (!cfg.runas.empty()) CASK_TRY(ValidateRunas(cfg.runas));
  if (cfg.cgroup.enabled) {
    CASK_TRY(ValidateCgroupName(cfg.id, "VM id (as a cgroup name)"));
    if (cfg.id.find('/') != std::string::npos)
      return Error::InvalidArgument("VM id must not contain '/' with a pod cgroup, got \"" + cfg.id + "\"");
  }
  bool with_fs = !cfg.shared_dir.empty();
  if (with_fs) {
    CASK_TRY(CheckFile(cfg.virtiofsd_path, "hypervisor.virtiofsd_path", /*executable=*/true));
    VirtiofsdOptions fo;
    fo.source = cfg.shared_dir;
    fo.cache = cfg.virtiofs_cache;
    CASK_TRY(ValidateVirtiofsdOptions(fo));
    struct stat st;
    if (::stat(cfg.shared_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Error::NotFound("shared directory " + cfg.shared_dir + " does not exist or is not a directory");
  }

  HostProbe host = host_ ? *host_ : ProbeHost();
  Accel accel = ResolveAccel(cfg.accel, host);
  if (accel == Accel::kKvm && !host.kvm_usable)
    return Error::FailedPrecondition("hypervisor.accel = kvm, but /dev/kvm cannot be opened read-write");
  Channel channel = ResolveChannel(cfg.channel, host);
  if (channel == Channel::kVsock && !host.vhost_vsock)
    return Error::FailedPrecondition("agent.channel = vsock, but /dev/vhost-vsock does not exist");

  qemu::KernelParamsOptions kp;
  kp.machine = machine;
  kp.accel = accel;
  kp.tsc_khz = host.tsc_khz;
  kp.channel = channel;
  kp.debug = cfg.debug;
  kp.user_params = cfg.kernel_params;
  kp.extra = cfg.extra_kernel_params;
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> params, qemu::KernelParams(kp));

  auto vm = std::make_unique<QemuVm>(cfg, channel);
  qemu::QemuCommand cmd;
  cmd.binary = cfg.qemu_path;
  cmd.runas = cfg.runas;
  cmd.name = "cask-" + cfg.id;
  cmd.machine.type = machine;
  cmd.accel.accel = accel;
  cmd.accel.vcpus = cfg.vcpus;
  cmd.accel.tcg_tb_size_mib = cfg.tcg_tb_size_mib;
  cmd.free_page_reporting = cfg.free_page_reporting;
  cmd.memory.mib = cfg.memory_mib;
  cmd.memory.shared = with_fs;
  cmd.kernel.kernel = cfg.kernel;
  cmd.kernel.initrd = cfg.initrd;
  cmd.kernel.params = std::move(params);
  cmd.agent.channel = channel;
  cmd.agent.socket_path = JoinPath(cfg.state_dir, "agent.sock");
  if (with_fs) cmd.virtiofs = qemu::VirtioFsOptions{JoinPath(cfg.state_dir, "virtiofsd.sock"), kVirtiofsTag};
  cmd.qmp.socket_path = JoinPath(cfg.state_dir, "qmp.sock");

  Status st = vm->Boot(cfg, std::move(cmd), with_fs);
  if (!st.ok()) {
    (void)vm->Stop(milliseconds(0));  // unwind: kill, reap, remove files
    return std::move(st).error().Wrap("start VM " + cfg.id);
  }
  return std::unique_ptr<Vm>(std::move(vm));
}

}  // namespace

std::string PodCgroupName(const std::string& id, const std::string& state_dir) {
  return CgroupNameFor(id, state_dir);
}

std::unique_ptr<Hypervisor> NewQemu() { return std::make_unique<QemuHypervisor>(std::nullopt); }

std::unique_ptr<Hypervisor> NewQemuWithHost(const HostProbe& host) {
  return std::make_unique<QemuHypervisor>(host);
}

}  // namespace cask::hypervisor
