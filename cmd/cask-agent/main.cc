// cask-agent: PID 1 of the pod VM (docs/architecture.md).
//
// As PID 1 (the normal case) it moves itself from the initramfs to a tmpfs
// root (switch_root.h), mounts the early file systems, sets up the
// console log and cgroups, loads kernel modules, starts the reaper and
// serves the agent API on the channel named by cask.channel= until the host
// destroys the sandbox, then powers off. It never exits.
//
// For debugging on a host it can also run as an ordinary process:
//   cask-agent --unix PATH [--debug] [--cgroup-root DIR]
// serves on a unix socket, becomes a child subreaper, skips the PID 1
// duties, and exits after DestroySandbox.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "cmd/cask-agent/agent.h"
#include "cmd/cask-agent/cmdline.h"
#include "cmd/cask-agent/init.h"
#include "cmd/cask-agent/modules.h"
#include "cmd/cask-agent/oom.h"
#include "cmd/cask-agent/reaper.h"
#include "cmd/cask-agent/serve.h"
#include "cmd/cask-agent/service.h"
#include "cmd/cask-agent/switch_root.h"
#include "lib/base/fs.h"
#include "lib/rpc/server.h"

namespace cask::agent {
namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

// Never returns: PID 1 exiting panics the kernel, so a fatal error powers
// the VM off instead (the console log says why).
[[noreturn]] void Die(const Logger& log, const std::string& what, const Error& e) {
  log.Error(what, {{"error", e.ToString()}});
  Status st = PowerOff();
  log.Error("power off failed", {{"error", st.ok() ? "" : st.error().ToString()}});
  for (;;) pause();
}

void LoadModules(const std::vector<std::string>& wanted, const Logger& log) {
  struct utsname u;
  ::uname(&u);
  ModuleLoadOptions mopts;
  mopts.release_dir = std::string("/lib/modules/") + u.release;
  mopts.wanted = wanted;
  auto report = LoadKernelModules(mopts);
  if (!report.ok()) {
    log.Warn("kernel modules not loaded", {{"error", report.error().ToString()}});
    return;
  }
  log.Info("kernel modules", {{"loaded", Join(report->loaded)},
                              {"builtin", Join(report->builtin)},
                              {"already_loaded", Join(report->already_loaded)},
                              {"ms", std::to_string(report->elapsed.count() / 1000)}});
  if (log.enabled(LogLevel::kDebug)) {
    Logger::Fields f;
    for (const auto& [name, us] : report->timings) f.emplace_back(name, std::to_string(us.count() / 1000) + "ms");
    log.Debug("kernel module load times", f);
  }
  for (const auto& m : report->missing)
    log.Warn("kernel module neither in modules.dep nor built in", {{"module", m}, {"dir", mopts.release_dir}});
  for (const auto& f : report->failed) log.Warn("kernel module failed to load", {{"error", f}});
}

// Open files of the agent (PID 1): room for about 16,000 processes' stdio.
constexpr rlim_t kAgentOpenFiles = 65536;

int RunPid1(char** argv) {
  // First of all, leave the initramfs (re-executes /init from a tmpfs root).
  auto switched = SwitchRootFromInitramfs(argv[0] != nullptr && argv[0][0] == '/' ? argv[0] : "/init", argv);
  // Before any thread: the signal mask is inherited by every thread.
  Status signals = SetupProcessSignals();
  Status mounts = MountEarlyFilesystems();
  int log_fd = SetupConsole("/dev/console");
  std::string cmdline = ReadFile("/proc/cmdline").ok() ? *ReadFile("/proc/cmdline") : "";
  BootOptions boot = ParseBootOptions(cmdline);
  Logger log(log_fd, boot.debug ? LogLevel::kDebug : LogLevel::kInfo, "init");
  log.Info("cask-agent starting", {{"channel", std::string(ChannelName(boot.channel))},
                                   {"debug", boot.debug ? "true" : "false"}});
  for (const auto& w : boot.warnings) log.Warn("kernel command line", {{"problem", w}});
  if (!switched.ok())
    log.Warn("still on the initramfs root: containers will use chroot, not pivot_root",
             {{"error", switched.error().ToString()}});
  else if (*switched)
    log.Warn("switched to a tmpfs root but could not re-execute; continuing");
  if (!signals.ok()) Die(log, "signal setup failed", signals.error());
  if (!mounts.ok()) log.Error("early mounts failed", {{"error", mounts.error().ToString()}});

  Status cg = SetupCgroups("/sys/fs/cgroup", "/sys/fs/cgroup/cask");
  if (!cg.ok()) log.Error("cgroup setup failed; containers will fail", {{"error", cg.error().ToString()}});

  LoadModules(AgentModules(boot.channel == ChannelKind::kVsock), log.WithSubsystem("modules"));

  // The kernel starts PID 1 with 1024 open files; each container process
  // holds up to four fds here (stdin, stdout, stderr, pidfd), so a pod with
  // hundreds of processes needs more.
  struct rlimit nofile = {kAgentOpenFiles, kAgentOpenFiles};
  if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0)
    log.Warn("cannot raise the open file limit", {{"error", Error::Sys(errno, "setrlimit RLIMIT_NOFILE").ToString()}});

  Reaper reaper;
  if (Status st = reaper.Start(); !st.ok()) Die(log, "reaper failed to start", st.error());
  OomWatcher oom;
  if (Status st = oom.Start(); !st.ok()) log.Error("OOM watcher failed to start", {{"error", st.error().ToString()}});

  AgentOptions aopts;
  Logger power_log = log;
  aopts.power_off = [power_log] {
    Status st = PowerOff();
    power_log.Error("power off failed", {{"error", st.ok() ? "" : st.error().ToString()}});
  };
  Agent agent(aopts, &reaper, &oom, log.WithSubsystem("agent"));
  rpc::Server server;
  RegisterAgentService(server, agent, log);
  // Off the boot path: the host can talk to the agent meanwhile.
  std::thread deferred_modules([log] { LoadModules(DeferredAgentModules(), log.WithSubsystem("modules")); });

  if (boot.channel == ChannelKind::kVsock) {
    Status st = ServeVsock(server, log);
    Die(log, "vsock channel stopped", st.ok() ? Error::Internal("server shut down") : st.error());
  }
  ServeSerialForever(server, agent, log);
}

int RunStandalone(int argc, char** argv) {
  std::string unix_path;
  bool debug = false;
  AgentOptions aopts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--unix" && i + 1 < argc) {
      unix_path = argv[++i];
    } else if (a == "--debug") {
      debug = true;
    } else if (a == "--cgroup-root" && i + 1 < argc) {
      aopts.cgroup_root = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s --unix PATH [--debug] [--cgroup-root DIR]\n(as PID 1 it takes no arguments)\n",
                   argv[0]);
      return 2;
    }
  }
  if (unix_path.empty()) {
    std::fprintf(stderr, "%s: not PID 1: --unix PATH is required\n", argv[0]);
    return 2;
  }
  Logger log(2, debug ? LogLevel::kDebug : LogLevel::kInfo, "init");
  if (Status st = SetupProcessSignals(); !st.ok()) {
    log.Error("signal setup failed", {{"error", st.error().ToString()}});
    return 1;
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  Reaper reaper;
  OomWatcher oom;
  for (Status st : {reaper.Start(), oom.Start()}) {
    if (!st.ok()) {
      log.Error("startup failed", {{"error", st.error().ToString()}});
      return 1;
    }
  }
  // The server is destroyed before the agent its handlers use.
  rpc::Server* server_ptr = nullptr;
  aopts.power_off = [&server_ptr] { server_ptr->Shutdown(); };
  aopts.power_off_delay = std::chrono::milliseconds(100);
  Agent agent(aopts, &reaper, &oom, log.WithSubsystem("agent"));
  rpc::Server server;
  server_ptr = &server;
  RegisterAgentService(server, agent, log);
  auto listener = rpc::ListenUnix(unix_path);
  if (!listener.ok()) {
    log.Error("listen failed", {{"error", listener.error().ToString()}});
    return 1;
  }
  log.Info("serving", {{"socket", unix_path}});
  Status st = server.Serve(std::move(*listener));
  ::unlink(unix_path.c_str());
  agent.CancelBlockingCalls();  // lets ~Server join its handlers
  if (!st.ok()) {
    log.Error("serve failed", {{"error", st.error().ToString()}});
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cask::agent

int main(int argc, char** argv) {
  if (::getpid() == 1) return cask::agent::RunPid1(argv);
  return cask::agent::RunStandalone(argc, argv);
}
