// cask-runtime: the host CLI. Parses options and calls one entry point per
// subcommand (run.h, check.h, env.h); nothing else lives here.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cmd/cask-runtime/check.h"
#include "cmd/cask-runtime/env.h"
#include "cmd/cask-runtime/install.h"
#include "cmd/cask-runtime/pool.h"
#include "cmd/cask-runtime/run.h"
#include "lib/config/config.h"

namespace {

// Usage errors (unknown option, bad value): the conventional 2.
constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  using namespace cask::runtime;
  CLI::App app{"cask-runtime: run containers in lightweight VMs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cask-runtime " CASK_VERSION);

  RunOptions run;
  uint64_t memory_mib = 0;
  uint32_t cpus = 0;
  auto* cmd_run = app.add_subcommand("run", "Boot a VM and run one container in it");
  auto* rootfs = cmd_run->add_option("--rootfs", run.request.rootfs, "Root filesystem directory (uses a default spec)");
  auto* bundle = cmd_run->add_option("--bundle", run.request.bundle, "OCI bundle directory (DIR/config.json)");
  rootfs->excludes(bundle);
  cmd_run->add_option("--config", run.config_path, std::string("Configuration file (default ") +
                                                        cask::config::kDefaultPath + ")");
  cmd_run->add_flag("-t,--tty", run.request.tty, "Allocate a terminal for the container");
  cmd_run->add_flag("-i,--interactive", run.interactive, "Keep stdin open and copy it to the container");
  auto* mem = cmd_run->add_option("--memory", memory_mib, "Container memory limit in MiB");
  auto* cpu = cmd_run->add_option("--cpus", cpus, "VM vCPUs and container CPU quota");
  cmd_run->add_option("--hostname", run.request.hostname, "Container hostname (default: the id)");
  cmd_run->add_option("--id", run.id, "Sandbox and container id (default: random)");
  cmd_run->add_flag("--timing", run.timing, "Print where the time went on stderr");
  cmd_run->add_flag("--debug", run.debug, "Debug logs, verbose guest console");
  cmd_run->add_option("command", run.request.command, "Command and arguments (after --)");
  cmd_run->positionals_at_end();

  std::string check_config;
  std::string check_containerd = kContainerdConfig;
  auto* cmd_check = app.add_subcommand("check", "Check that this host can run cask");
  cmd_check->add_option("--config", check_config, "Configuration file");
  cmd_check->add_option("--containerd-config", check_containerd,
                        "containerd's config, checked for the cask runtime handler");

  ContainerdInstall install;
  bool install_containerd = false, uninstall = false;
  auto* cmd_install = app.add_subcommand("install", "Register cask with containerd's CRI plugin (handler \"cask\")");
  cmd_install->add_flag("--containerd", install_containerd, "Write the containerd runtime handler drop-in")->required();
  cmd_install->add_option("--config", install.config, "containerd's main config")->capture_default_str();
  cmd_install->add_option("--dropin", install.dropin, "The drop-in to write (default: <config dir>/conf.d/cask.toml)");
  cmd_install->add_option("--cask-config", install.cask_config,
                          "cask configuration the handler's shim reads (default: cask's own default)");
  cmd_install->add_flag("--uninstall", uninstall, "Remove the drop-in and its import");

  std::string env_config;
  auto* cmd_env = app.add_subcommand("env", "Print the effective configuration (TOML)");
  cmd_env->add_option("--config", env_config, "Configuration file");

  std::string pool_config;
  auto* cmd_pool = app.add_subcommand("pool", "The pool of ready VMs");
  cmd_pool->require_subcommand(1);
  auto* cmd_pool_serve = cmd_pool->add_subcommand("serve", "Keep pool.size VMs booted and hand them to shims");
  cmd_pool_serve->add_option("--config", pool_config, "Configuration file");
  auto* cmd_pool_status = cmd_pool->add_subcommand("status", "Show the pool's size and ready VMs");
  cmd_pool_status->add_option("--config", pool_config, "Configuration file");

  auto* cmd_version = app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help, version or the error
    return rc == 0 ? 0 : kExitUsage;
  }

  if (*cmd_run) {
    if (*mem) run.request.memory_mib = memory_mib;
    if (*cpu) run.request.cpus = cpus;
    return Run(run);
  }
  if (*cmd_check) return Check(check_config, check_containerd);
  if (*cmd_install) return Install(install, uninstall);
  if (*cmd_env) return Env(env_config);
  if (*cmd_pool_serve) return PoolServe(pool_config);
  if (*cmd_pool_status) return PoolStatusCommand(pool_config);
  if (*cmd_version) {
    std::printf("cask-runtime %s\nagent API: cask.agent.v1\n", CASK_VERSION);
    return 0;
  }
  return kExitUsage;
}
