#include "lib/hypervisor/qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/hypervisor/qemu_cmdline.h"
#include "lib/hypervisor/qmp.h"
#include "lib/hypervisor/sockets.h"
#include "lib/hypervisor/virtiofsd.h"
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

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// The last `max` bytes of a file, from a line start when one is in range.
std::string FileTail(const std::string& path, size_t max) {
  if (max == 0) return "";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || st.st_size <= 0) return "";
  size_t size = static_cast<size_t>(st.st_size);
  size_t n = std::min(size, max);
  std::string buf(n, '\0');
  ssize_t r = ::pread(fd.get(), buf.data(), n, static_cast<off_t>(size - n));
  if (r <= 0) return "";
  buf.resize(static_cast<size_t>(r));
  if (n < size) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos && nl + 1 < buf.size()) buf.erase(0, nl + 1);
  }
  return buf;
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

class QemuVm final : public Vm {
 public:
  QemuVm(const VmConfig& cfg, Channel channel)
      : id_(cfg.id),
        state_dir_(cfg.state_dir),
        channel_(channel),
        agent_sock_(JoinPath(cfg.state_dir, "agent.sock")),
        qmp_sock_(JoinPath(cfg.state_dir, "qmp.sock")),
        fs_sock_(JoinPath(cfg.state_dir, "virtiofsd.sock")),
        console_log_(JoinPath(cfg.state_dir, "console.log")),
        qemu_log_(JoinPath(cfg.state_dir, "qemu.log")),
        fs_log_(JoinPath(cfg.state_dir, "virtiofsd.log")) {}

  ~QemuVm() override { (void)Stop(kDefaultStopGrace); }

  // Creates the state dir, starts virtiofsd and QEMU, waits for QMP. On
  // error the caller runs Stop() to unwind.
  Status Boot(const VmConfig& cfg, qemu::QemuCommand cmd, bool with_fs);

  pid_t pid() const override { return pid_; }
  Channel channel() const override { return channel_; }
  Result<UniqueFd> ConnectAgent(milliseconds timeout) override;
  Status Stop(milliseconds grace) override;
  bool Exited() override;
  std::string console_log_path() const override { return console_log_; }
  std::string ConsoleTail(size_t max_bytes) const override { return FileTail(console_log_, max_bytes); }
  Status Pause() override { return QmpSimple("stop"); }
  Status Resume() override { return QmpSimple("cont"); }

 private:
  Status QmpSimple(const char* command);
  // Waits for QEMU to exit until the deadline; true if it did.
  bool WaitQemuExit(Clock::time_point deadline);
  std::string ExitDescription();
  Status RemoveFiles();
  Status StopLocked(milliseconds grace);

  const std::string id_, state_dir_;
  const Channel channel_;
  const std::string agent_sock_, qmp_sock_, fs_sock_, console_log_, qemu_log_, fs_log_;
  bool created_dir_ = false;
  uint32_t guest_cid_ = 0;
  pid_t pid_ = -1;
  sys::Pidfd pidfd_;  // QEMU's, for waiting on its exit

  mutable std::mutex proc_mu_;  // qemu_, qemu_status_, virtiofsd_
  ChildProcess qemu_;
  std::optional<int> qemu_status_;  // -1: reaped elsewhere (ECHILD)
  ChildProcess virtiofsd_;

  std::mutex qmp_mu_;
  QmpClient qmp_;

  std::mutex stop_mu_;
  std::atomic<bool> stopping_{false};   // set by Stop; makes ConnectAgent and QMP calls fail
  std::optional<Status> stop_result_;   // under stop_mu_
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

Status QemuVm::Boot(const VmConfig& cfg, qemu::QemuCommand cmd, bool with_fs) {
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

  if (with_fs) {
    VirtiofsdOptions fo;
    fo.binary = cfg.hv.virtiofsd_path;
    fo.socket_path = fs_sock_;
    fo.source = cfg.shared_dir;
    fo.cache = cfg.hv.virtiofs_cache;
    fo.log_path = fs_log_;
    CASK_ASSIGN_OR_RETURN(ChildProcess fsd, StartVirtiofsd(fo, kVirtiofsdStartTimeout));
    std::lock_guard<std::mutex> l(proc_mu_);
    virtiofsd_ = std::move(fsd);
  }

  SpawnOptions so;
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
  CASK_ASSIGN_OR_RETURN(UniqueFd log, Open(qemu_log_, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  CASK_ASSIGN_OR_RETURN(UniqueFd con, Open(console_log_, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  con.Reset();  // QEMU appends to it; created here so ConsoleTail works at once
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
  if (auto pfd = sys::Pidfd::Open(pid_); pfd.ok()) pidfd_ = std::move(*pfd);

  // QEMU serves QMP only once the machine is built, so a handshake means
  // every device was realised and the guest is running.
  auto deadline = Clock::now() + kQemuStartTimeout;
  for (;;) {
    if (Exited())
      return Error::Internal("qemu exited during startup (" + ExitDescription() + "): " +
                             Trimmed(FileTail(qemu_log_, kStartErrorLogBytes)));
    auto fd = ConnectUnixOnce(qmp_sock_);
    if (fd.ok()) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      auto client = QmpClient::Handshake(std::move(*fd), std::max(left, milliseconds(1)));
      if (client.ok()) {
        std::lock_guard<std::mutex> l(qmp_mu_);
        qmp_ = std::move(*client);
        return Ok();
      }
      // A reset handshake usually means QEMU is exiting on an error: give
      // it a moment so that its own message is what the caller sees.
      if (WaitQemuExit(Clock::now() + milliseconds(2000)))
        return Error::Internal("qemu exited during startup (" + ExitDescription() + "): " +
                               Trimmed(FileTail(qemu_log_, kStartErrorLogBytes)));
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
  auto deadline = Clock::now() + timeout;
  std::string what = channel_ == Channel::kSerial
                         ? agent_sock_
                         : "vsock " + std::to_string(guest_cid_) + ":" + std::to_string(kAgentVsockPort);
  for (;;) {
    if (stopping_) return Error::FailedPrecondition("the VM is stopped");
    if (Exited())
      return Error::Unavailable("VM exited (qemu " + ExitDescription() + ") before the agent channel " + what +
                                " connected; console: " + Trimmed(FileTail(console_log_, kExitTailBytes)));
    auto fd = channel_ == Channel::kSerial ? ConnectUnixOnce(agent_sock_)
                                           : ConnectVsockOnce(guest_cid_, kAgentVsockPort);
    if (fd.ok()) return fd;
    Code c = fd.error().code();
    bool retry = c == Code::kNotFound || c == Code::kUnavailable || c == Code::kDeadlineExceeded;
    if (!retry) return std::move(fd).error().Wrap("connect to the agent channel");
    if (Clock::now() >= deadline)
      return Error::DeadlineExceeded("agent channel " + what + " not connected within " +
                                     std::to_string(timeout.count()) + " ms: " + fd.error().message());
    std::this_thread::sleep_for(milliseconds(10));
  }
}

Status QemuVm::QmpSimple(const char* command) {
  if (stopping_) return Error::FailedPrecondition("the VM is stopped");
  std::lock_guard<std::mutex> l(qmp_mu_);
  if (!qmp_.connected()) return Error::FailedPrecondition("no QMP connection");
  auto r = qmp_.Execute(command, nullptr, milliseconds(5000));
  if (!r.ok()) return std::move(r).error();
  return Ok();
}

Status QemuVm::Stop(milliseconds grace) {
  std::lock_guard<std::mutex> l(stop_mu_);
  if (stop_result_) return *stop_result_;
  stopping_ = true;
  stop_result_ = StopLocked(grace);
  return *stop_result_;
}

Status QemuVm::StopLocked(milliseconds grace) {
  auto deadline = Clock::now() + grace;
  std::optional<Error> first;
  auto note = [&](Status st) {
    if (!st.ok() && !first) first = std::move(st).error();
  };

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
  note(RemoveFiles());
  if (first) return std::move(*first).Wrap("stop VM " + id_);
  return Ok();
}

Status QemuVm::RemoveFiles() {
  std::optional<Error> first;
  for (const auto* p : {&agent_sock_, &qmp_sock_, &fs_sock_, &console_log_, &qemu_log_, &fs_log_}) {
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

class QemuHypervisor final : public Hypervisor {
 public:
  explicit QemuHypervisor(std::optional<HostProbe> host) : host_(std::move(host)) {}
  Result<std::unique_ptr<Vm>> Start(const VmConfig& cfg) override;

 private:
  std::optional<HostProbe> host_;  // fixed facts (tests); probed per Start otherwise
};

Result<std::unique_ptr<Vm>> QemuHypervisor::Start(const VmConfig& cfg) {
  const config::HypervisorConfig& hv = cfg.hv;
  if (cfg.id.empty()) return Error::InvalidArgument("VM id is empty");
  if (cfg.state_dir.empty() || cfg.state_dir.front() != '/')
    return Error::InvalidArgument("VM state dir must be an absolute path, got \"" + cfg.state_dir + "\"");
  if (cfg.state_dir.size() + std::string_view("/virtiofsd.sock").size() > kMaxUnixPath)
    return Error::InvalidArgument("VM state dir " + cfg.state_dir + " is too long for unix socket paths (max " +
                                  std::to_string(kMaxUnixPath) + " bytes with \"/virtiofsd.sock\")");
  CASK_TRY(CheckFile(hv.path, "hypervisor.path", /*executable=*/true));
  CASK_TRY(CheckFile(hv.kernel, "hypervisor.kernel", false));
  CASK_TRY(CheckFile(hv.initrd, "hypervisor.initrd", false));
  CASK_ASSIGN_OR_RETURN(qemu::MachineType machine, qemu::ParseMachineType(hv.machine_type));
  if (hv.vcpus < config::kMinVcpus || hv.vcpus > config::kMaxVcpus)
    return Error::InvalidArgument("hypervisor.vcpus: must be between 1 and 64, got " + std::to_string(hv.vcpus));
  if (hv.memory_mib < config::kMinMemoryMib || hv.memory_mib > config::kMaxMemoryMib)
    return Error::InvalidArgument("hypervisor.memory_mib: must be between 64 and 65536, got " +
                                  std::to_string(hv.memory_mib));
  bool with_fs = !cfg.shared_dir.empty();
  if (with_fs) {
    CASK_TRY(CheckFile(hv.virtiofsd_path, "hypervisor.virtiofsd_path", /*executable=*/true));
    VirtiofsdOptions fo;
    fo.source = cfg.shared_dir;
    fo.cache = hv.virtiofs_cache;
    CASK_TRY(ValidateVirtiofsdOptions(fo));
    struct stat st;
    if (::stat(cfg.shared_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Error::NotFound("shared directory " + cfg.shared_dir + " does not exist or is not a directory");
  }

  HostProbe host = host_ ? *host_ : ProbeHost();
  config::Accel accel = ResolveAccel(hv.accel, host);
  if (accel == config::Accel::kKvm && !host.kvm_usable)
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
  kp.user_params = hv.kernel_params;
  kp.extra = cfg.extra_kernel_params;
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> params, qemu::KernelParams(kp));

  auto vm = std::make_unique<QemuVm>(cfg, channel);
  qemu::QemuCommand cmd;
  cmd.binary = hv.path;
  cmd.name = "cask-" + cfg.id;
  cmd.machine.type = machine;
  cmd.accel.accel = accel;
  cmd.accel.vcpus = hv.vcpus;
  cmd.memory.mib = hv.memory_mib;
  cmd.memory.shared = with_fs;
  cmd.kernel.kernel = hv.kernel;
  cmd.kernel.initrd = hv.initrd;
  cmd.kernel.params = std::move(params);
  cmd.console.log_path = vm->console_log_path();
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

std::unique_ptr<Hypervisor> NewQemu() { return std::make_unique<QemuHypervisor>(std::nullopt); }

std::unique_ptr<Hypervisor> NewQemuWithHost(const HostProbe& host) {
  return std::make_unique<QemuHypervisor>(host);
}

}  // namespace cask::hypervisor
