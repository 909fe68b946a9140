#include "cmd/cask-runtime/run.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>

#include "cmd/cask-runtime/signals.h"
#include "cmd/cask-runtime/terminal.h"
#include "cmd/cask-runtime/watchdog.h"
#include "lib/base/fs.h"
#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/oci/id.h"
#include "lib/pool/pooled_hypervisor.h"
#include "lib/sandbox/container.h"
#include "lib/sandbox/sandbox.h"

namespace cask::runtime {

namespace {

using Clock = std::chrono::steady_clock;

// How long the output may take to drain after the process exited (other
// processes of the container may still hold its stdout for a moment).
constexpr std::chrono::milliseconds kDrainTimeout{30'000};
// VM memory headroom above a container limit: guest kernel + agent.
constexpr uint32_t kVmMemoryHeadroomMib = 128;

void PrintError(const std::string& msg) { std::fprintf(stderr, "cask-runtime: %s\n", msg.c_str()); }

int Fail(const Error& e) {
  PrintError(e.ToString());
  return kExitRuntimeError;
}

long long Ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

Result<std::string> RandomId() {
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open("/dev/urandom", O_RDONLY));
  unsigned char b[6];
  CASK_TRY(ReadFull(fd.get(), reinterpret_cast<char*>(b), sizeof b));
  static const char kHex[] = "0123456789abcdef";
  std::string id = "cask-";
  for (unsigned char c : b) {
    id += kHex[c >> 4];
    id += kHex[c & 15];
  }
  return id;
}

Result<UniqueFd> Dup(int fd) {
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) return Error::Sys(errno, "dup fd " + std::to_string(fd));
  return UniqueFd(d);
}

// What the signal thread needs to know about the run, under a mutex.
struct SignalTarget {
  std::mutex mu;
  sandbox::AgentClient* agent = nullptr;  // set once the container started
  std::shared_ptr<sandbox::Process> init;  // likewise
  std::string container_id;
  bool tty = false;
  // A terminating signal received before the container started: abandon.
  std::atomic<int> cancel_signal{0};

  void Handle(int sig) {
    std::lock_guard<std::mutex> l(mu);
    if (sig == SIGWINCH) {
      if (agent && tty) {
        if (auto ws = GetWindowSize(STDIN_FILENO)) (void)agent->TtyWinResize(container_id, "", ws->rows, ws->cols);
      }
      return;
    }
    if (init) {
      (void)init->Signal(sig);
      return;
    }
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT) cancel_signal = sig;
  }
};

// The exec failure of StartContainer, docker style: the exit status comes
// from the reason the guest reported (ExecFailureOf), nothing else.
int ReportStartFailure(const Error& e, const std::string& cmd) {
  // The agent's message may carry its own context before "exec: ...".
  const std::string msg = BoundedString(e.message(), 1024);
  if (auto pos = msg.find("exec failed: "); pos != std::string::npos) {
    PrintError(msg.substr(pos));
  } else if (auto pos2 = msg.find("exec: "); pos2 != std::string::npos) {
    PrintError(msg.substr(pos2));
  } else {
    PrintError("exec: " + cmd + ": " + msg);
  }
  switch (ExecFailureOf(e)) {
    case ExecFailure::kNotFound: return kExitCommandNotFound;
    case ExecFailure::kPermissionDenied: return kExitCannotExecute;
    case ExecFailure::kNone: break;
  }
  return kExitRuntimeError;
}

class RunSession {
 public:
  explicit RunSession(const RunOptions& o) : opts_(o), log_(STDERR_FILENO, o.debug ? LogLevel::kDebug : LogLevel::kWarn, "runtime") {}
  ~RunSession() { Teardown(); }

  int Run();

 private:
  Result<int> RunContainer(PreparedContainer& pc, config::Config cfg);
  // RunContainer's steps; a value in the optional is the exit status to stop with.
  Result<std::optional<int>> BootSandbox(const PreparedContainer& pc, config::Config cfg);
  Result<std::optional<int>> CreateContainer(const PreparedContainer& pc, bool tty);
  Result<int> StartAndWait(const oci::Process& proc, bool tty);
  void Teardown();
  void PrintTiming();

  const RunOptions& opts_;
  Logger log_;
  SignalTarget target_;
  std::string id_;
  Clock::time_point t0_ = Clock::now(), t_booted_{}, t_created_{}, t_started_{}, t_exited_{}, t_done_{};

  // Declared in the order they are made; Teardown() releases them in the
  // right order explicitly.
  CleanupWatchdog watchdog_;
  std::unique_ptr<SignalForwarder> forwarder_;
  std::shared_ptr<sandbox::Sandbox> sandbox_;
  std::unique_ptr<sandbox::Container> container_;
  std::chrono::milliseconds teardown_timeout_{10'000};
  RawTerminal raw_;
};

int RunSession::Run() {
  // Everything that can be checked without booting is checked first.
  auto cfg = opts_.config_path.empty() ? config::LoadDefault() : config::LoadFile(opts_.config_path);
  if (!cfg.ok()) return Fail(std::move(cfg).error().Wrap("load the configuration"));
  auto pc = PrepareContainer(opts_.request);
  if (!pc.ok()) return Fail(pc.error());
  if (opts_.id.empty()) {
    auto id = RandomId();
    if (!id.ok()) return Fail(id.error());
    id_ = *id;
  } else {
    id_ = opts_.id;
  }
  if (auto st = oci::ValidateId("--id", id_); !st.ok()) return Fail(st.error());

  config::Config c = std::move(*cfg);
  if (opts_.request.cpus) c.hypervisor.vcpus = *opts_.request.cpus;
  if (opts_.request.memory_mib) {
    uint64_t want = *opts_.request.memory_mib + kVmMemoryHeadroomMib;
    if (want > config::kMaxMemoryMib)
      return Fail(Error::InvalidArgument("--memory " + std::to_string(*opts_.request.memory_mib) +
                                         ": the VM would need more than " + std::to_string(config::kMaxMemoryMib) +
                                         " MiB"));
    if (want > c.hypervisor.memory_mib) c.hypervisor.memory_mib = static_cast<uint32_t>(want);
  }
  if (opts_.debug) c.runtime.debug = true;
  if (!opts_.request.rootfs.empty() && opts_.request.hostname.empty()) pc->spec.hostname = id_;

  auto status = RunContainer(*pc, std::move(c));
  Teardown();
  t_done_ = Clock::now();
  if (opts_.timing) PrintTiming();
  if (!status.ok()) return Fail(status.error());
  return *status;
}

// The run, in steps: boot the pod VM, create the container, start it and
// wait for its exit. Each step returns an exit status to stop with (a
// signal before the start, a program that cannot be executed) or nothing
// to go on; errors are returned as such. Teardown() undoes them all.
Result<int> RunSession::RunContainer(PreparedContainer& pc, config::Config cfg) {
  oci::Process& proc = *pc.spec.process;
  const bool tty = proc.terminal;
  const bool stdin_is_tty = ::isatty(STDIN_FILENO) == 1;
  if (tty && stdin_is_tty) {
    if (auto ws = GetWindowSize(STDIN_FILENO)) proc.console_size = oci::ConsoleSize{ws->rows, ws->cols};
  }
  CASK_ASSIGN_OR_RETURN(std::optional<int> stop, BootSandbox(pc, std::move(cfg)));
  if (stop) return *stop;
  CASK_ASSIGN_OR_RETURN(stop, CreateContainer(pc, tty));
  if (stop) return *stop;
  if (int sig = target_.cancel_signal.load()) return 128 + sig;
  if (tty && stdin_is_tty && opts_.interactive) {
    auto raw = RawTerminal::Enter(STDIN_FILENO);
    if (!raw.ok()) return std::move(raw).error().Wrap("put the terminal in raw mode");
    raw_ = std::move(*raw);
  }
  return StartAndWait(proc, tty);
}

Result<std::optional<int>> RunSession::BootSandbox(const PreparedContainer& pc, config::Config cfg) {
  // Whatever happens to this process, the sandbox's host state goes away.
  // Forked while this process still has a single thread.
  CASK_ASSIGN_OR_RETURN(watchdog_, CleanupWatchdog::Start(JoinPath(cfg.runtime.state_dir, id_)));
  teardown_timeout_ = std::chrono::milliseconds(cfg.agent.teardown_timeout_ms);

  // Signals: blocked from here on in every thread, handled by one thread.
  CASK_ASSIGN_OR_RETURN(forwarder_, SignalForwarder::Start([this](int sig) { target_.Handle(sig); }));

  sandbox::SandboxOptions so;
  so.id = id_;
  so.config = std::move(cfg);
  so.hostname = pc.spec.hostname;
  so.logger = log_;
  if (so.config.pool.enabled) {
    // A ready VM from the node's pool when one fits (same rules as the
    // shim's); cold otherwise, and a pool that is not running costs one
    // failed connect.
    pool::PooledOptions po;
    po.pool = so.config.pool;
    po.config_path = opts_.config_path;
    po.log = log_.WithSubsystem("pool");
    so.hypervisor = pool::NewPooled(std::move(po));
  }
  so.cancelled = [this] { return target_.cancel_signal.load() != 0; };
  auto sb = sandbox::Sandbox::Create(std::move(so));
  if (!sb.ok()) {
    if (int sig = target_.cancel_signal.load()) return std::optional<int>(128 + sig);
    return std::move(sb).error();
  }
  sandbox_ = std::move(*sb);
  t_booted_ = Clock::now();
  return std::optional<int>();
}

Result<std::optional<int>> RunSession::CreateContainer(const PreparedContainer& pc, bool tty) {
  // The container: rootfs shared, created in the guest, stdio pumped.
  sandbox::ContainerOptions co;
  co.id = id_;
  co.spec = pc.spec;
  co.rootfs_dir = pc.rootfs;
  co.log = log_;
  co.drain_after_exit = kDrainTimeout;
  if (opts_.interactive) {
    CASK_ASSIGN_OR_RETURN(co.init_io.stdin_fd, Dup(STDIN_FILENO));
  }
  CASK_ASSIGN_OR_RETURN(co.init_io.stdout_fd, Dup(STDOUT_FILENO));
  if (!tty) {
    CASK_ASSIGN_OR_RETURN(co.init_io.stderr_fd, Dup(STDERR_FILENO));
  }
  auto c = sandbox::Container::Create(sandbox_, std::move(co));
  if (!c.ok()) {
    // A program that cannot be executed is found when the container is
    // created: docker's exit statuses (127, 126) as for a failed start.
    const oci::Process& proc = *pc.spec.process;
    if (ExecFailureOf(c.error()) != ExecFailure::kNone)
      return std::optional<int>(ReportStartFailure(c.error(), proc.args.empty() ? "" : proc.args[0]));
    return std::move(c).error().Wrap("create the container");
  }
  container_ = std::move(c).value();
  t_created_ = Clock::now();
  return std::optional<int>();
}

Result<int> RunSession::StartAndWait(const oci::Process& proc, bool tty) {
  const std::shared_ptr<sandbox::Process>& init = container_->init();
  auto started = container_->Start(*init, {});
  if (!started.ok()) {
    raw_.Restore();
    return ReportStartFailure(started.error(), proc.args.empty() ? "" : proc.args[0]);
  }
  t_started_ = Clock::now();
  {
    std::lock_guard<std::mutex> l(target_.mu);
    target_.agent = &sandbox_->agent();
    target_.init = init;
    target_.container_id = id_;
    target_.tty = tty;
  }
  // A signal that arrived between boot and start is delivered now.
  if (int sig = target_.cancel_signal.load()) (void)init->Signal(sig);

  // The exit was recorded only after the output drained (kDrainTimeout).
  sandbox::ExitInfo exit = init->WaitExit();
  t_exited_ = Clock::now();
  if (exit.status == sandbox::kLostExitStatus && sandbox_->VmExited())
    return Error::Unavailable("the VM exited while the container ran; last console output:\n" +
                              sandbox_->ConsoleTail(3000));
  return static_cast<int>(exit.status);
}

void RunSession::Teardown() {
  bool clean = true;
  raw_.Restore();
  // No more signal deliveries to a container that is going away.
  forwarder_.reset();
  {
    std::lock_guard<std::mutex> l(target_.mu);
    target_.agent = nullptr;
    target_.init.reset();
  }
  if (container_) {
    // Kills what is left of the container; its exits and EOFs follow. A
    // guest that does not answer in time loses its connection, which ends
    // every wait at once.
    Status st;
    {
      sandbox::GuestDeadline deadline(teardown_timeout_, [this] {
        container_->MarkVmKilled();
        sandbox_->agent().Close();
      });
      st = container_->Remove(teardown_timeout_);
    }
    if (!st.ok()) {
      log_.Debug("remove container", {{"error", st.error().Bounded(1024).ToString()}});
      sandbox_->agent().Close();
    }
    container_.reset();  // unshares the rootfs
  }
  if (sandbox_) {
    auto st = sandbox_->Destroy();
    if (!st.ok()) {
      PrintError(st.error().ToString());
      clean = false;
    }
  }
  if (clean) {
    watchdog_.Disarm();
  } else {
    watchdog_.CleanUpNow();
  }
}

void RunSession::PrintTiming() {
  if (!sandbox_) return;
  const auto& t = sandbox_->timing();
  auto ms = [](std::chrono::nanoseconds d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::fprintf(stderr,
               "cask-runtime: timing: vm_start_ms=%lld agent_ready_ms=%lld boot_ms=%lld setup_ms=%lld "
               "create_ms=%lld run_ms=%lld teardown_ms=%lld total_ms=%lld guest_uptime_ms=%lld vm=%s\n",
               static_cast<long long>(ms(t.vm_start)), static_cast<long long>(ms(t.agent_ready)),
               static_cast<long long>(ms(t.vm_start + t.agent_ready)), static_cast<long long>(ms(t.setup)),
               t_created_ == Clock::time_point{} ? -1LL : Ms(t_created_ - t_booted_),
               (t_started_ == Clock::time_point{} || t_exited_ == Clock::time_point{}) ? -1LL : Ms(t_exited_ - t_started_),
               t_exited_ == Clock::time_point{} ? -1LL : Ms(t_done_ - t_exited_), Ms(t_done_ - t0_),
               static_cast<long long>(ms(sandbox_->agent_info().uptime)), sandbox_->warm() ? "pool" : "cold");
}

}  // namespace

int Run(const RunOptions& opts) {
  ::signal(SIGPIPE, SIG_IGN);
  RunSession s(opts);
  return s.Run();
}

}  // namespace cask::runtime
