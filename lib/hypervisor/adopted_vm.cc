// A VM taken over from another owner (handover.h): QEMU and virtiofsd are
// not our children, so they are watched and killed through pidfds.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <vector>
#include <mutex>
#include <optional>
#include <utility>
#include <thread>

#include "lib/base/fs.h"
#include "lib/hypervisor/capped_log.h"
#include "lib/hypervisor/handover.h"
#include "lib/hypervisor/qmp.h"
#include "lib/hypervisor/sockets.h"
#include "lib/hypervisor/virtiofsd.h"
#include "lib/hypervisor/vm_control.h"
#include "lib/hypervisor/vm_leftovers.h"

namespace cask::hypervisor {

Result<VmHandover> Vm::Detach() { return Error::Unimplemented("this hypervisor cannot hand a VM over"); }

namespace {

using std::chrono::milliseconds;

// The same bounds as a VM booted here (qemu.cc).
constexpr size_t kConsoleKeepBytes = 256 * 1024;
constexpr size_t kVirtiofsdLogKeepBytes = 64 * 1024;
constexpr size_t kQemuLogKeepBytes = 64 * 1024;
constexpr size_t kExitTailBytes = 2048;

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Every descendant of `pid` (through /proc/<pid>/task/*/children).
std::vector<pid_t> Descendants(pid_t pid) {
  std::vector<pid_t> out, todo{pid};
  while (!todo.empty() && out.size() < 1024) {
    pid_t p = todo.back();
    todo.pop_back();
    std::string task_dir = "/proc/" + std::to_string(p) + "/task";
    DIR* d = ::opendir(task_dir.c_str());
    if (d == nullptr) continue;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      auto text = ReadFile(task_dir + "/" + e->d_name + "/children");
      if (!text.ok()) continue;
      size_t i = 0;
      while (i < text->size()) {
        size_t j = text->find(' ', i);
        if (j == std::string::npos) j = text->size();
        pid_t c = static_cast<pid_t>(std::atoi(text->substr(i, j - i).c_str()));
        if (c > 0) {
          out.push_back(c);
          todo.push_back(c);
        }
        i = j + 1;
      }
    }
    ::closedir(d);
  }
  return out;
}

class AdoptedVm final : public Vm {
 public:
  AdoptedVm(VmHandover h, const VmSettings& cfg)
      : id_(cfg.id),
        state_dir_(h.state_dir),
        channel_(h.channel),
        guest_cid_(h.guest_cid),
        agent_sock_(JoinPath(h.state_dir, "agent.sock")),
        console_log_(JoinPath(h.state_dir, "console.log")),
        console_logger_(cfg.console_logger),
        vmm_id_(h.vmm),
        fsd_id_(h.virtiofsd),
        vmm_(std::move(h.vmm_pidfd)),
        fsd_(std::move(h.virtiofsd_pidfd)),
        console_fd_(std::move(h.console)),
        qemu_stderr_(std::move(h.qemu_stderr)),
        fs_stderr_(std::move(h.virtiofsd_stderr)),
        qmp_(QmpClient::FromNegotiated(std::move(h.qmp))),
        boot_files_(BootFiles(cfg)),
        nic_(std::move(h.nic)) {}

  ~AdoptedVm() override { (void)Stop(milliseconds(3000)); }

  Status Init(const VmSettings& cfg, const std::string& console_tail);

  pid_t pid() const override { return vmm_id_.pid; }
  Channel channel() const override { return channel_; }
  Result<UniqueFd> ConnectAgent(milliseconds timeout) override;
  Status Stop(milliseconds grace) override;
  bool Exited() override { return !vmm_.Alive(); }
  std::string console_log_path() const override { return console_log_; }
  std::string ConsoleTail(size_t max_bytes) const override {
    if (logs_closed_ || !console_) return "";
    return console_->Tail(max_bytes);
  }
  Status Pause() override { return RunQmpCommand(qmp_, qmp_mu_, stop_, "stop"); }
  Status Resume() override { return RunQmpCommand(qmp_, qmp_mu_, stop_, "cont"); }
  std::optional<ReadyNic> TakeReadyNic() override { return std::exchange(nic_, std::nullopt); }
  // The pool released them once already; a second pass costs a read of
  // QEMU's maps and finds what the guest's handover faulted back (nothing).
  Result<PageOutReport> ReleaseBootFiles() override {
    if (stop_.stopping) return Error::FailedPrecondition("VM " + id_ + " is stopped");
    return PageOutFileMappings(vmm_, boot_files_);  // vmm_ is never reset: no lock
  }

 private:
  Status StopLocked(milliseconds grace);
  void Pump();
  void StopThreads();

  const std::string id_, state_dir_;
  const Channel channel_;
  const uint32_t guest_cid_;
  const std::string agent_sock_, console_log_;
  const Logger console_logger_;
  const ProcessIdentity vmm_id_, fsd_id_;
  const sys::Pidfd vmm_, fsd_;

  std::unique_ptr<CappedLog> console_, qemu_log_, fs_log_;
  UniqueFd console_fd_, qemu_stderr_, fs_stderr_;
  UniqueFd wake_;  // eventfd: ends the pump and the virtiofsd watch
  std::thread pump_, fs_watch_;
  std::atomic<bool> logs_closed_{false};
  HostCgroup cgroup_;

  std::mutex qmp_mu_;
  QmpClient qmp_;
  const std::vector<std::string> boot_files_;  // kernel, initrd (ReleaseBootFiles)

  StopOnce stop_;
  std::optional<ReadyNic> nic_;  // until TakeReadyNic; one owner calls it
};

Status AdoptedVm::Init(const VmSettings& cfg, const std::string& console_tail) {
  CASK_ASSIGN_OR_RETURN(console_, CappedLog::Create(console_log_, kConsoleKeepBytes));
  console_->Append(BoundedString(console_tail, kHandoverConsoleTailBytes));
  CASK_ASSIGN_OR_RETURN(qemu_log_, CappedLog::Create(JoinPath(state_dir_, "qemu.log"), kQemuLogKeepBytes));
  CASK_ASSIGN_OR_RETURN(fs_log_, CappedLog::Create(JoinPath(state_dir_, "virtiofsd.log"), kVirtiofsdLogKeepBytes));
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::Sys(errno, "eventfd for the log pump");
  wake_.Reset(efd);

  // The pod's cgroup, as a cold boot makes it; then the processes move in
  // (out of the giver's cgroup, whose cleanup no longer reaches them).
  CASK_ASSIGN_OR_RETURN(CgroupLayout layout, DetectCgroupLayout());
  CgroupLimits limits;
  if (cfg.cgroup.memory_overhead_mib > 0)
    limits.memory_bytes = (uint64_t{cfg.memory_mib} + cfg.cgroup.memory_overhead_mib) << 20;
  limits.cpu_quota_us = uint64_t{cfg.cgroup.cpu_quota_cores} * limits.cpu_period_us;
  limits.pids_max = cfg.cgroup.pids_max;
  CASK_ASSIGN_OR_RETURN(cgroup_, HostCgroup::Create(layout, cfg.cgroup.parent, PodCgroupName(id_, state_dir_), limits)
                                     .Context("create the pod's host cgroup (runtime.sandbox_cgroup)"));
  // Identity first: a pid that names another process now is never moved.
  if (!vmm_.Alive() || !fsd_.Alive()) return Error::Unavailable("the handed-over VM has exited");
  if (CheckLiveness(vmm_id_) != Liveness::kRunning || CheckLiveness(fsd_id_) != Liveness::kRunning)
    return Error::Unavailable("the handed-over VM's processes are not the recorded ones");
  CASK_TRY_CTX(cgroup_.Add(vmm_id_.pid), "move qemu into the pod's cgroup");
  CASK_TRY_CTX(cgroup_.Add(fsd_id_.pid), "move virtiofsd into the pod's cgroup");
  // virtiofsd sandboxes itself in a child process (and QEMU may have
  // helpers): every descendant moves too, or the giver's cgroup cleanup
  // would kill it. A child cannot be reaped (its pid reused) while we read
  // its parent's list: only its parent reaps it, and the parent is alive.
  for (pid_t root : {vmm_id_.pid, fsd_id_.pid})
    for (pid_t child : Descendants(root)) CASK_TRY_CTX(cgroup_.Add(child), "move a child of pid " + std::to_string(root));
  if (cfg.cgroup.include_caller)
    CASK_TRY_CTX(cgroup_.Add(::getpid()), "move the shim into the pod's cgroup (runtime.cgroup_shim)");
  HostProcesses hp{vmm_id_, fsd_id_, cgroup_.dirs()};
  CASK_TRY(WriteHostProcesses(state_dir_, hp).Context("record the VM's host processes"));

  pump_ = std::thread([this] { Pump(); });
  fs_watch_ = std::thread([this] {
    pollfd p[2] = {{fsd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    for (;;) {
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) return;
      if (p[0].revents & POLLIN) break;
    }
    if (stop_.stopping) return;
    (void)vmm_.Signal(SIGKILL);  // a guest without its file server: end it (as qemu.cc)
  });
  return Ok();
}

void AdoptedVm::Pump() {
  PumpVmLogs(wake_.get(), console_fd_.get(), console_.get(), console_logger_,
             {{fs_stderr_.get(), fs_log_.get(), nullptr}, {qemu_stderr_.get(), qemu_log_.get(), nullptr}});
}

void AdoptedVm::StopThreads() {
  if (wake_) {
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  if (pump_.joinable()) pump_.join();
  if (fs_watch_.joinable()) fs_watch_.join();
}

Result<UniqueFd> AdoptedVm::ConnectAgent(milliseconds timeout) {
  return ConnectAgentChannel(channel_ == Channel::kSerial, agent_sock_, guest_cid_, timeout,
                             [this](const std::string& what) -> std::optional<Error> {
                               if (stop_.stopping) return Error::FailedPrecondition("the VM is stopped");
                               if (!Exited()) return std::nullopt;
                               return Error::Unavailable("VM exited before the agent channel " + what +
                                                         " connected; console: " + Trimmed(ConsoleTail(kExitTailBytes)));
                             });
}

Status AdoptedVm::Stop(milliseconds grace) {
  return stop_.Run([&] { return StopLocked(grace); });
}

Status AdoptedVm::StopLocked(milliseconds grace) {
  std::optional<Error> first;
  auto note = [&](Status st) {
    if (!st.ok() && !first) first = std::move(st).error();
  };
  // The watch would kill QEMU as virtiofsd goes: end it first.
  if (wake_) {
    uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  if (fs_watch_.joinable()) fs_watch_.join();
  if (vmm_.Alive()) {
    {
      std::lock_guard<std::mutex> q(qmp_mu_);
      if (qmp_.connected() && grace.count() > 0) (void)qmp_.Quit(grace);
    }
    auto exited = vmm_.WaitExited(grace);
    if (!exited.ok() || !*exited) {
      (void)vmm_.Signal(SIGKILL);
      (void)vmm_.WaitExited(milliseconds(5000));
    }
  }
  {
    std::lock_guard<std::mutex> q(qmp_mu_);
    qmp_.Close();
  }
  if (fsd_.Alive()) {
    auto gone = fsd_.WaitExited(milliseconds(1000));
    if (!gone.ok() || !*gone) {
      (void)fsd_.Signal(SIGTERM);
      gone = fsd_.WaitExited(milliseconds(1000));
      if (!gone.ok() || !*gone) {
        (void)fsd_.Signal(SIGKILL);
        gone = fsd_.WaitExited(milliseconds(2000));
        if (!gone.ok() || !*gone) note(Error::DeadlineExceeded("virtiofsd did not exit after SIGKILL"));
      }
    }
  }
  if (cgroup_.valid()) note(cgroup_.Remove(milliseconds(2000)).Context("remove the pod's cgroup"));
  StopThreads();
  logs_closed_ = true;
  for (auto* log : {console_.get(), qemu_log_.get(), fs_log_.get()})
    if (log) log->RemoveFile();
  for (const char* name : {"agent.sock", "qmp.sock", "virtiofsd.sock", "console.log", "qemu.log", "virtiofsd.log",
                           kHostProcessesFile}) {
    std::string p = JoinPath(state_dir_, name);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT && !first) first = Error::Sys(errno, "remove " + p);
  }
  // The directory itself belongs to whoever adopted the VM (it also holds
  // the shared directory's mounts); removed here only when empty.
  if (::rmdir(state_dir_.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST && !first)
    first = Error::Sys(errno, "rmdir " + state_dir_);
  if (first) return std::move(*first).Wrap("stop VM " + id_);
  return Ok();
}

}  // namespace

Result<std::unique_ptr<Vm>> AdoptVm(VmHandover h, const VmSettings& cfg) {
  if (!cfg.cgroup.enabled)
    return Error::FailedPrecondition("adopting a VM needs the pod's cgroup (runtime.sandbox_cgroup)");
  if (cfg.state_dir != h.state_dir)
    return Error::InvalidArgument("adopted VM's state dir " + h.state_dir + " is not " + cfg.state_dir);
  if (!h.vmm_pidfd || !h.virtiofsd_pidfd || !h.qmp || !h.console)
    return Error::InvalidArgument("the handover lacks a pidfd, the QMP connection or the console");
  std::string tail = std::move(h.console_tail);
  auto vm = std::make_unique<AdoptedVm>(std::move(h), cfg);
  Status st = vm->Init(cfg, tail);
  if (!st.ok()) {
    (void)vm->Stop(milliseconds(0));  // kills what was moved, removes the cgroup
    return std::move(st).error().Wrap("adopt VM " + cfg.id);
  }
  return std::unique_ptr<Vm>(std::move(vm));
}

}  // namespace cask::hypervisor
