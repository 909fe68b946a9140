#include "lib/pool/pooled_hypervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/hypervisor/handover.h"
#include "lib/hypervisor/host_cgroup.h"
#include "lib/pool/pool.h"
#include "lib/sandbox/shared_dir.h"

namespace cask::pool {

namespace {

using std::chrono::milliseconds;

// The pool answers a take at once (it hands over what is ready, or says
// no); a slow answer is treated as no answer and the pod boots cold.
constexpr milliseconds kReplyTimeout{5000};

class PooledHypervisor final : public hypervisor::Hypervisor {
 public:
  explicit PooledHypervisor(PooledOptions o)
      : pool_(std::move(o.pool)), config_path_(std::move(o.config_path)), cold_(std::move(o.cold)), log_(o.log) {
    if (!cold_) cold_ = hypervisor::NewQemu();
  }

  Result<std::unique_ptr<hypervisor::Vm>> Start(const hypervisor::VmSettings& cfg) override { return cold_->Start(cfg); }
  Result<std::unique_ptr<hypervisor::Vm>> TakeReady(const hypervisor::VmSettings& cfg) override;

 private:
  Result<UniqueFd> ConnectOrAutostart();

  const config::PoolConfig pool_;
  const std::string config_path_;
  std::unique_ptr<hypervisor::Hypervisor> cold_;
  const Logger log_;
};

Result<UniqueFd> PooledHypervisor::ConnectOrAutostart() {
  auto c = Connect(pool_.socket);
  if (c.ok() || !pool_.autostart) return c;
  // Socket activation: the first pod boots cold while the pool starts.
  static std::once_flag started;
  std::call_once(started, [&] {
    auto st = StartPoolDaemon(pool_.runtime_path, config_path_);
    if (st.ok()) {
      log_.Info("started the VM pool", {{"socket", pool_.socket}});
    } else {
      log_.Warn("cannot start the VM pool", {{"error", st.error().ToString()}});
    }
  });
  return c;
}

Result<std::unique_ptr<hypervisor::Vm>> PooledHypervisor::TakeReady(const hypervisor::VmSettings& cfg) {
  if (!pool_.enabled) return Error::FailedPrecondition("the pool is disabled (pool.enabled)");
  if (!cfg.nics.empty()) return Error::FailedPrecondition("the pod brings its own TAPs (a pool VM has its NIC already)");
  if (!cfg.cgroup.enabled) return Error::FailedPrecondition("runtime.sandbox_cgroup is off (a pool VM must move into it)");
  CASK_ASSIGN_OR_RETURN(UniqueFd sock, ConnectOrAutostart());
  CASK_TRY(SendMessage(sock.get(), {{"op", "take"}, {"key", ToJson(KeyOf(cfg))}}));
  CASK_ASSIGN_OR_RETURN(Message reply, ReceiveMessage(sock.get(), kReplyTimeout));
  if (!reply.body.contains("ok") || reply.body["ok"] != true) {
    std::string reason = reply.body.contains("reason") && reply.body["reason"].is_string()
                             ? BoundedString(reply.body["reason"].get<std::string>(), 512)
                             : "no reason given";
    return Error::Unavailable("pool: " + reason);
  }
  if (!reply.body.contains("vm") || !reply.body.contains("key"))
    return Error::InvalidArgument("pool: a take reply without vm or key");
  // Closing `sock` from here on without "adopted" makes the pool kill the VM.
  CASK_ASSIGN_OR_RETURN(hypervisor::VmHandover h,
                        HandoverFromMessage(reply.body["vm"], std::move(reply.fds), VmsDir(pool_)));
  auto kill = [&](Error e) -> Error {
    (void)h.vmm_pidfd.Signal(SIGKILL);
    (void)h.virtiofsd_pidfd.Signal(SIGKILL);
    return std::move(e).Wrap("take a ready VM");
  };
  auto key = KeyFromJson(reply.body["key"]);
  if (!key.ok()) return kill(std::move(key).error());
  if (std::string diff = Mismatch(KeyOf(cfg), *key); !diff.empty())
    return kill(Error::FailedPrecondition("the pool handed over a VM that does not match: " + diff));
  if (cfg.shared_dir != JoinPath(cfg.state_dir, "shared"))
    return kill(Error::InvalidArgument("the shared dir must be <state dir>/shared"));
  if (cfg.wants_ready_nic && !h.nic) return kill(Error::FailedPrecondition("the pool handed over a VM without a NIC"));

  // 1. Out of the pool's directory (and out of reach of its cleanup).
  if (::renameat2(AT_FDCWD, h.state_dir.c_str(), AT_FDCWD, cfg.state_dir.c_str(), RENAME_NOREPLACE) != 0) {
    int e = errno;
    return kill(Error::Sys(e == EEXIST ? Code::kAlreadyExists : Code::kFailedPrecondition, e,
                           "rename " + h.state_dir + " to " + cfg.state_dir));
  }
  std::string pool_dir = std::move(h.state_dir);
  h.state_dir = cfg.state_dir;
  // The sockets moved with the directory; QEMU keeps its listening fds.
  // 2. Into the pod's cgroup (out of the pool's).
  std::string vmm_pid = std::to_string(h.vmm.pid);
  auto vm = hypervisor::AdoptVm(std::move(h), cfg);
  if (!vm.ok()) {
    // AdoptVm stopped the VM; its directory remains.
    if (sandbox::UnmountAllUnder(cfg.state_dir).ok()) (void)sandbox::RemoveTreeNoMounts(cfg.state_dir);
    return std::move(vm).error().Wrap("take a ready VM");
  }
  // 3. The pool forgets it.
  if (Status st = SendMessage(sock.get(), {{"op", "adopted"}}); !st.ok()) {
    (void)(*vm)->Stop(milliseconds(0));
    vm->reset();
    if (sandbox::UnmountAllUnder(cfg.state_dir).ok()) (void)sandbox::RemoveTreeNoMounts(cfg.state_dir);
    return std::move(st).error().Wrap("acknowledge the handover");
  }
  log_.Info("took a ready VM from the pool", {{"from", pool_dir}, {"vmm_pid", vmm_pid}});
  return std::move(*vm);
}

}  // namespace

std::unique_ptr<hypervisor::Hypervisor> NewPooled(PooledOptions o) {
  return std::make_unique<PooledHypervisor>(std::move(o));
}

Result<PoolStatus> QueryStatus(const std::string& socket) {
  CASK_ASSIGN_OR_RETURN(UniqueFd sock, Connect(socket));
  CASK_TRY(SendMessage(sock.get(), {{"op", "status"}}));
  CASK_ASSIGN_OR_RETURN(Message reply, ReceiveMessage(sock.get(), kReplyTimeout));
  const auto& b = reply.body;
  auto num = [&](const char* f) -> uint64_t {
    return b.contains(f) && b[f].is_number_unsigned() ? b[f].get<uint64_t>() : 0;
  };
  if (!b.contains("ok") || b["ok"] != true) return Error::Unavailable("the pool did not answer status");
  PoolStatus s;
  s.size = static_cast<uint32_t>(std::min<uint64_t>(num("size"), UINT32_MAX));
  s.ready = static_cast<uint32_t>(std::min<uint64_t>(num("ready"), UINT32_MAX));
  s.booting = static_cast<uint32_t>(std::min<uint64_t>(num("booting"), UINT32_MAX));
  s.handed_over = num("handed_over");
  if (b.contains("key")) {
    auto k = KeyFromJson(b["key"]);
    if (k.ok()) s.key = *k;
  }
  return s;
}

Status StartPoolDaemon(const std::string& runtime_path, const std::string& config_path) {
  std::vector<std::string> argv = {runtime_path, "pool", "serve"};
  if (!config_path.empty()) {
    argv.push_back("--config");
    argv.push_back(config_path);
  }
  SpawnOptions so;
  so.new_session = true;
  std::vector<UniqueFd> procs;
  if (auto layout = hypervisor::DetectCgroupLayout(); layout.ok()) {
    std::vector<std::string> mounts = {layout->unified};
    if (!layout->v2()) mounts.insert(mounts.end(), {layout->memory, layout->cpu, layout->pids});
    for (const auto& m : mounts) {
      if (m.empty()) continue;
      std::string dir = JoinPath(m, "cask-pool.service");
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + dir);
      UniqueFd fd(::open(JoinPath(dir, "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd) return Error::Sys(errno, "open " + dir + "/cgroup.procs");
      procs.push_back(std::move(fd));
    }
  }
  for (const auto& fd : procs) so.cgroup_procs_fds.push_back(fd.get());
  CASK_ASSIGN_OR_RETURN(ChildProcess child, Spawn(argv, so).Context("start " + runtime_path + " pool serve"));
  // Not ours to wait for: the daemon outlives this process. A double fork
  // is not needed: the shim's reaper (or init, once the shim exits) reaps it.
  (void)child.Release();
  return Ok();
}

}  // namespace cask::pool
