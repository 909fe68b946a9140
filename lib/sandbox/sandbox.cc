#include "lib/sandbox/sandbox.h"
#include "lib/sandbox/clock_sync.h"
#include "lib/sandbox/pod_shm.h"
#include "lib/sandbox/vm_settings.h"
#include "lib/sandbox/shared_dir.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/oci/default_seccomp.h"
#include "lib/oci/id.h"

namespace cask::sandbox {

namespace {

using Clock = std::chrono::steady_clock;

// Bounds on the teardown: the guest powers off by itself after
// DestroySandbox; QEMU is asked to quit, then killed.
constexpr std::chrono::milliseconds kDestroyRpcTimeout{5'000};
constexpr std::chrono::milliseconds kStopGrace{5'000};
constexpr size_t kConsoleTailBytes = 3000;

// The agent waits up to 10 s for the NICs to appear; allow for a slow guest.
constexpr std::chrono::milliseconds kConfigureNetworkTimeout{20'000};
// How often the guest's listening ports are looked up for port forwarding:
// a server that starts listening is reachable through port-forward within
// about this long.
constexpr std::chrono::milliseconds kPortPollInterval{1'000};

NetworkSetup GuestNetworkSetup(const net::PodNetwork& pn) {
  NetworkSetup out;
  for (const auto& pi : pn.interfaces()) {
    NetInterfaceSetup i{pi.name, net::FormatMac(pi.mac), pi.mtu, {},
                        pi.guest_mac_now ? net::FormatMac(*pi.guest_mac_now) : ""};
    for (const auto& a : pi.addresses) i.addresses.emplace_back(net::FormatIp(a.ip), a.prefix_len);
    out.interfaces.push_back(std::move(i));
  }
  for (const auto& pr : pn.routes()) {
    const net::Route& r = pr.route;
    out.routes.push_back(NetRouteSetup{r.dst ? net::FormatIp(*r.dst) : "", r.dst ? r.dst_len : 0u,
                                       r.gateway ? net::FormatIp(*r.gateway) : "", r.src ? net::FormatIp(*r.src) : "",
                                       pr.device, r.scope});
  }
  if (const auto& hl = pn.host_link()) {
    for (auto& i : out.interfaces)
      if (i.name == hl->device) i.addresses.emplace_back(net::kHostLinkGuest, net::kHostLinkPrefix);
    out.neighbours.push_back(NetNeighbourSetup{net::kHostLinkHost, net::FormatMac(hl->host_mac), hl->device});
  }
  for (const auto& pn_ : pn.neighbours())
    out.neighbours.push_back(NetNeighbourSetup{net::FormatIp(pn_.neighbour.ip), net::FormatMac(pn_.neighbour.mac),
                                               pn_.device});
  return out;
}

bool IsBindMount(const oci::Mount& m) {
  if (m.type == "bind") return true;
  return std::any_of(m.options.begin(), m.options.end(), [](const std::string& o) { return o == "bind" || o == "rbind"; });
}

bool HasOption(const oci::Mount& m, std::string_view opt) {
  return std::find(m.options.begin(), m.options.end(), opt) != m.options.end();
}

}  // namespace

Sandbox::Sandbox(SandboxOptions& opts)
    : id_(opts.id),
      config_(opts.config),
      log_(opts.logger.With("sandbox", opts.id)),
      mounts_(opts.mounts ? opts.mounts : RealHostMounts()) {}

Result<std::unique_ptr<Sandbox>> Sandbox::Create(SandboxOptions opts) {
  CASK_TRY(oci::ValidateId("sandbox id", opts.id));
  std::unique_ptr<Sandbox> sb(new Sandbox(opts));
  auto booted = sb->Boot(opts);
  if (!booted.ok()) {
    Error err = std::move(booted).error();
    // Capture the console before Destroy() removes it.
    std::string tail;
    if (sb->vm_ && sb->vm_->Exited()) tail = sb->vm_->ConsoleTail(kConsoleTailBytes);
    auto destroyed = sb->Destroy();
    if (!destroyed.ok())
      sb->log_.Error("cleanup after a failed boot", {{"error", destroyed.error().ToString()}});
    if (!tail.empty()) err.Wrap("the VM exited while booting; last console output:\n" + tail + "\n");
    return std::move(err).Wrap("create sandbox " + sb->id_);
  }
  return sb;
}

Status Sandbox::Boot(SandboxOptions& opts) {
  auto t0 = Clock::now();
  const std::string& state_dir = config_.runtime.state_dir;
  CASK_TRY_CTX(MkdirAll(state_dir, 0711), "create the state directory");
  {
    std::lock_guard<std::mutex> l(mu_);
    dir_ = JoinPath(state_dir, id_);
  }
  hypervisor_ = std::move(opts.hypervisor);
  if (!hypervisor_) hypervisor_ = hypervisor::NewQemu();
  hypervisor::VmSettings vc = VmSettingsFromConfig(config_);
  vc.id = id_;
  vc.state_dir = dir_;
  vc.shared_dir = JoinPath(dir_, "shared");
  vc.console_logger = log_.WithSubsystem("console");
  vc.extra_kernel_params = opts.extra_kernel_params;
  // A ready VM (a pool's) when the hypervisor has one that fits; a pod with
  // a network namespace takes one with a NIC and adopts its TAP.
  vc.wants_ready_nic = !opts.netns_path.empty();
  Status warm = BootWarm(opts, vc, t0);
  if (warm.ok()) return Ok();
  if (warm.error().code() != Code::kUnimplemented)
    log_.Info("no ready VM, booting one", {{"reason", warm.error().ToString()}});
  vc.wants_ready_nic = false;
  return BootCold(opts, vc, t0);
}

Status Sandbox::BootWarm(SandboxOptions& opts, const hypervisor::VmSettings& vc, Clock::time_point t0) {
  CASK_ASSIGN_OR_RETURN(std::unique_ptr<hypervisor::Vm> vm, hypervisor_->TakeReady(vc));
  Status st = Ok();
  {
    std::lock_guard<std::mutex> l(mu_);
    dir_created_ = true;  // renamed into place by TakeReady
    vm_ = std::move(vm);
    auto shared = SharedDir::Adopt(JoinPath(dir_, "mounts"), JoinPath(dir_, "shared"));
    if (shared.ok()) {
      shared_ = std::move(*shared);
    } else {
      st = std::move(shared).error().Wrap("adopt the ready VM's shared directory");
    }
  }
  // Its NIC, if it has one: moved into the pod's namespace and wired like a
  // cold TAP (the agent gives the guest NIC the pod's MAC in FinishBoot);
  // without a namespace it is dropped (the TAP stays down in the pool's
  // holding namespace until the VM exits).
  std::optional<hypervisor::ReadyNic> nic = vm_->TakeReadyNic();
  if (st.ok() && !opts.netns_path.empty()) {
    if (!nic) {
      st = Error::FailedPrecondition("the ready VM has no NIC");
    } else {
      auto mac = net::ParseMac(nic->guest_mac);
      if (!mac.ok()) st = std::move(mac).error().Wrap("the ready VM's MAC");
      if (st.ok()) {
        auto pn = net::PodNetwork::Create(
            opts.netns_path, net::ReadyTap{std::move(nic->tap), std::move(nic->netns), nic->tap_name, *mac});
        if (pn.ok()) {
          pod_network_ = std::move(*pn);
        } else {
          st = std::move(pn).error().Wrap("adopt the ready VM's NIC");
        }
      }
    }
  }
  nic.reset();
  auto t_started = Clock::now();
  timing_.vm_start = t_started - t0;
  if (st.ok()) {
    log_.Info("vm taken from the pool", {{"pid", std::to_string(vm_->pid())},
                                         {"nic", pod_network_ ? "adopted" : "none"}});
    st = FinishBoot(opts, t_started, t0);
  }
  if (!st.ok()) UndoWarmBoot();
  warm_ = st.ok();
  return st;
}

void Sandbox::UndoWarmBoot() {
  if (forwarder_ || forward_poll_.joinable()) {
    StopPortForwarding();
    forwarder_.reset();
    std::lock_guard<std::mutex> l(poll_mu_);
    poll_stop_ = false;  // a cold boot may start its own
  }
  clock_sync_.reset();
  io_loop_.reset();
  if (agent_) agent_->Close();
  agent_.reset();
  std::lock_guard<std::mutex> l(mu_);
  if (vm_) {
    auto st = vm_->Stop(kStopGrace);
    if (!st.ok()) log_.Warn("stop the ready VM", {{"error", st.error().ToString()}});
  }
  vm_.reset();
  if (pod_network_) {
    // The adopted TAP (QEMU, its other holder, is gone): deleted, so a cold
    // boot makes its own.
    auto st = pod_network_->Close();
    if (!st.ok()) log_.Warn("remove the ready VM's TAP", {{"error", st.error().ToString()}});
  }
  pod_network_.reset();
  if (shared_) {
    auto st = shared_->Teardown();
    if (!st.ok()) log_.Warn("remove the ready VM's shared directory", {{"error", st.error().ToString()}});
  }
  shared_.reset();
  if (dir_created_) {
    auto st = UnmountAllUnder(dir_);
    if (st.ok()) st = RemoveTreeNoMounts(dir_);
    if (st.ok()) dir_created_ = false;
    if (!st.ok()) log_.Warn("remove the ready VM's directory", {{"error", st.error().ToString()}});
  }
}

Status Sandbox::BootCold(SandboxOptions& opts, hypervisor::VmSettings& vc, Clock::time_point t0) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (::mkdir(dir_.c_str(), 0700) != 0) {
      if (errno == EEXIST)
        return Error::AlreadyExists("sandbox " + id_ + " already exists (" + dir_ +
                                    "); remove it if no cask process uses it");
      return Error::Sys(errno, "mkdir " + dir_);
    }
    dir_created_ = true;
    CASK_ASSIGN_OR_RETURN(shared_, mounts_->CreateShare(JoinPath(dir_, "mounts"), JoinPath(dir_, "shared"))
                                       .Context("prepare the shared directory"));
  }
  vc.shared_dir = shared_->path();
  if (!opts.netns_path.empty()) {
    CASK_ASSIGN_OR_RETURN(pod_network_, net::PodNetwork::Create(opts.netns_path).Context("pod network"));
    for (const auto& pi : pod_network_->interfaces()) vc.nics.push_back({pi.tap_fd.get(), net::FormatMac(pi.mac)});
    log_.Info("pod network", {{"netns", opts.netns_path}, {"interfaces", std::to_string(vc.nics.size())}});
  }
  CASK_ASSIGN_OR_RETURN(vm_, hypervisor_->Start(vc).Context("start the VM"));
  auto t_started = Clock::now();
  timing_.vm_start = t_started - t0;
  log_.Info("vm started", {{"pid", std::to_string(vm_->pid())}});
  return FinishBoot(opts, t_started, t0);
}

Status Sandbox::FinishBoot(SandboxOptions& opts, Clock::time_point t_started, Clock::time_point t0) {
  auto connect_timeout = std::chrono::milliseconds(config_.agent.connect_timeout_ms);
  CASK_ASSIGN_OR_RETURN(UniqueFd channel, vm_->ConnectAgent(connect_timeout).Context("connect to the agent channel"));
  agent_ = std::make_unique<AgentClient>(std::move(channel));
  CASK_ASSIGN_OR_RETURN(io_loop_, ProcessIoLoop::Start(*agent_));

  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t_started);
  auto remaining = std::max(connect_timeout - elapsed, std::chrono::milliseconds(1));
  auto abort = [&] { return vm_->Exited() || (opts.cancelled && opts.cancelled()); };
  auto info = agent_->WaitReady(remaining, abort);
  if (!info.ok()) {
    if (vm_->Exited()) return Error::Unavailable("the VM exited before the agent answered");
    return std::move(info).error().Wrap("wait for the agent (agent.connect_timeout_ms = " +
                                        std::to_string(config_.agent.connect_timeout_ms) + ")");
  }
  agent_info_ = std::move(*info);
  auto t_ready = Clock::now();
  timing_.agent_ready = t_ready - t_started;
  log_.Info("agent ready", {{"agent_version", agent_info_.agent_version},
                            {"kernel", agent_info_.kernel_release},
                            {"boot_ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                           timing_.agent_ready).count())}});

  SandboxSetup setup;
  setup.sandbox_id = id_;
  setup.hostname = opts.hostname;
  setup.resolv_conf = opts.resolv_conf;
  setup.mounts.push_back(GuestMount{std::string(kVirtiofsTag), std::string(kGuestSharedDir), "virtiofs", {}});
  setup.mounts.push_back(PodShmMount(opts.shm_bytes));  // the pod's /dev/shm (pod_shm.h)
  CASK_TRY_CTX(agent_->SetupSandbox(setup), "set up the guest");
  if (pod_network_ && !pod_network_->interfaces().empty())
    CASK_TRY_CTX(agent_->ConfigureNetwork(GuestNetworkSetup(*pod_network_), kConfigureNetworkTimeout),
                 "configure the guest network");
  if (pod_network_ && pod_network_->host_link()) StartPortForwarding();
  CASK_TRY(StartClockSync());
  auto t_setup = Clock::now();
  timing_.setup = t_setup - t_ready;
  timing_.total = t_setup - t0;
  return Ok();
}

void Sandbox::StartPortForwarding() {
  net::PortForwarder::Options o;
  o.netns_fd = pod_network_->netns_fd();
  o.target_ip = net::kHostLinkGuest;
  auto pf = net::PortForwarder::Start(o);
  if (!pf.ok()) {
    // The pod runs without port forwarding rather than not at all.
    log_.Warn("port forwarding unavailable", {{"error", pf.error().ToString()}});
    return;
  }
  forwarder_ = std::move(*pf);
  forward_poll_ = std::thread([this] {
    std::set<uint16_t> last;
    std::unique_lock<std::mutex> l(poll_mu_);
    while (!poll_stop_) {
      l.unlock();
      auto ports = agent_->ListTcpListeners();
      if (ports.ok() && *ports != last) {
        auto st = forwarder_->SetPorts(*ports);
        if (st.ok()) {
          last = *ports;
          std::string list;
          for (uint16_t p : forwarder_->listening()) list += (list.empty() ? "" : ",") + std::to_string(p);
          log_.Info("forwarding ports", {{"ports", list}});
        }
      }
      l.lock();
      poll_cv_.wait_for(l, kPortPollInterval, [this] { return poll_stop_; });
    }
  });
}

void Sandbox::StopPortForwarding() {
  {
    std::lock_guard<std::mutex> l(poll_mu_);
    poll_stop_ = true;
  }
  poll_cv_.notify_all();
  if (forward_poll_.joinable()) forward_poll_.join();
  if (forwarder_) forwarder_->Stop();
}

Status Sandbox::StartClockSync() {
  // The guest's clock is the host's from the first container on.
  CASK_TRY_CTX(agent_->SetTime(std::chrono::system_clock::now()), "set the guest clock");
  AgentClient* agent = agent_.get();
  clock_sync_ = std::make_unique<ClockSync>([agent](auto now) { return agent->SetTime(now); }, kClockSyncInterval,
                                            log_.WithSubsystem("clock"));
  return Ok();
}

Sandbox::~Sandbox() {
  auto st = Destroy();
  if (!st.ok()) log_.Error("destroy sandbox", {{"error", st.error().ToString()}});
}

pid_t Sandbox::vmm_pid() const { return vm_ ? vm_->pid() : -1; }

bool Sandbox::VmExited() const { return !vm_ || vm_->Exited(); }

std::string Sandbox::ConsoleTail(size_t max_bytes) const { return vm_ ? vm_->ConsoleTail(max_bytes) : std::string(); }

Result<std::string> Sandbox::ShareRootfs(const std::string& container_id, const std::string& host_dir,
                                         bool readonly) {
  CASK_TRY(oci::ValidateId("container id", container_id));
  struct stat st;
  if (::stat(host_dir.c_str(), &st) != 0) return Error::Sys(errno, "rootfs " + host_dir);
  if (!S_ISDIR(st.st_mode)) return Error::InvalidArgument("rootfs " + host_dir + " is not a directory");
  std::lock_guard<std::mutex> l(mu_);
  if (destroyed_ || !shared_) return Error::FailedPrecondition("sandbox " + id_ + " is destroyed");
  CASK_TRY_CTX(shared_->Bind(host_dir, container_id + "/rootfs", readonly), "share the rootfs of " + container_id);
  return std::string(kGuestSharedDir) + "/" + container_id + "/rootfs";
}

Result<oci::Spec> Sandbox::ShareMounts(const std::string& container_id, oci::Spec spec) {
  CASK_TRY(oci::ValidateId("container id", container_id));
  oci::ApplyDefaultSeccomp(spec, config_.runtime.default_seccomp);
  spec = UsePodShm(std::move(spec));  // a host /dev/shm bind is never shared
  std::vector<size_t> host_binds;
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    const oci::Mount& m = spec.mounts[i];
    if (!IsBindMount(m) || m.source.empty() || m.source.front() != '/') continue;
    if (IsPodShmBind(m)) continue;  // a guest path (UsePodShm)
    if (!PathExists(m.source))
      return Error::InvalidArgument("mounts[" + std::to_string(i) + "] (" + m.destination + "): bind source " +
                                    m.source + " does not exist on the host");
    host_binds.push_back(i);
  }
  if (host_binds.empty()) return spec;
  std::lock_guard<std::mutex> l(mu_);
  if (destroyed_ || !shared_) return Error::FailedPrecondition("sandbox " + id_ + " is destroyed");
  const std::string mounts_rel = container_id + "/mounts";
  CASK_ASSIGN_OR_RETURN(bool already, shared_->Exists(mounts_rel));
  if (already)
    return Error::AlreadyExists("the mounts of container " + container_id + " are already shared");
  for (size_t i : host_binds) {
    oci::Mount& m = spec.mounts[i];
    std::string rel = mounts_rel + "/" + std::to_string(i);
    auto st = shared_->Bind(m.source, rel, HasOption(m, "ro"));
    if (!st.ok()) {
      (void)shared_->Remove(mounts_rel);  // all or nothing
      return std::move(st).error().Wrap("share mounts[" + std::to_string(i) + "] (" + m.destination + ")");
    }
    m.source = std::string(kGuestSharedDir) + "/" + rel;
  }
  return spec;
}

Status Sandbox::UnshareRootfs(const std::string& container_id) {
  CASK_TRY(oci::ValidateId("container id", container_id));
  std::lock_guard<std::mutex> l(mu_);
  if (!shared_) return Ok();
  return shared_->Remove(container_id).Context("unshare container " + container_id);
}

Status Sandbox::Destroy() {
  std::lock_guard<std::mutex> l(mu_);
  if (destroyed_) return Ok();
  destroyed_ = true;
  std::optional<Error> first;
  auto note = [&](Status st, const char* what) {
    if (!st.ok()) {
      log_.Warn(what, {{"error", st.error().ToString()}});
      if (!first) first = std::move(st).error().Wrap(what);
    }
  };
  StopPortForwarding();
  clock_sync_.reset();  // before the agent goes
  if (agent_) {
    if (!agent_->closed() && vm_ && !vm_->Exited()) {
      // Best effort: the guest stops its containers and powers off.
      auto st = agent_->DestroySandbox(kDestroyRpcTimeout);
      if (!st.ok()) log_.Debug("DestroySandbox", {{"error", st.error().ToString()}});
    }
    agent_->Close();
  }
  if (vm_) note(vm_->Stop(kStopGrace), "stop the VM");
  if (pod_network_) note(pod_network_->Close(), "remove the pod network's TAPs and filters");
  if (shared_) note(shared_->Teardown(), "remove the shared directory");
  if (dir_created_) {
    auto st = RemoveTreeNoMounts(dir_);
    if (st.ok()) dir_created_ = false;
    note(std::move(st), "remove the state directory");
  }
  if (first) return std::move(*first).Wrap("destroy sandbox " + id_);
  log_.Info("sandbox destroyed");
  return Ok();
}

}  // namespace cask::sandbox
