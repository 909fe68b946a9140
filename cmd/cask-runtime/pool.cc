#include "cmd/cask-runtime/pool.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "lib/base/log.h"
#include "lib/config/config.h"
#include "lib/pool/pool.h"
#include "lib/pool/pooled_hypervisor.h"

namespace cask::runtime {

namespace {

Result<config::Config> Load(const std::string& path) {
  return path.empty() ? config::LoadDefault() : config::LoadFile(path);
}

}  // namespace

int PoolServe(const std::string& config_path) {
  auto cfg = Load(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "cask-runtime pool: %s\n", cfg.error().ToString().c_str());
    return 1;
  }
  Logger log(STDERR_FILENO, cfg->runtime.debug ? LogLevel::kDebug : LogLevel::kInfo, "pool");
  auto lock = pool::LockStateDir(cfg->pool);
  if (!lock.ok()) {
    log.Error("cannot start the pool", {{"error", lock.error().ToString()}});
    return 1;
  }
  // Before any thread: the watchdog is a fork of this process.
  if (auto st = pool::StartWatchdog(pool::VmsDir(cfg->pool), cfg->pool.cgroup_parent, lock->get()); !st.ok()) {
    log.Error("cannot start the pool's watchdog", {{"error", st.error().ToString()}});
    return 1;
  }
  // Every thread inherits this mask; the signals are taken by sigwait.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  pool::PoolOptions o;
  o.config = *cfg;
  o.log = log;
  auto p = pool::Pool::Start(std::move(o));
  if (!p.ok()) {
    log.Error("cannot start the pool", {{"error", p.error().ToString()}});
    return 1;
  }
  int sig = 0;
  while (sigwait(&sigs, &sig) != 0) {
  }
  log.Info("stopping the pool", {{"signal", std::to_string(sig)}});
  auto st = (*p)->Stop();
  if (!st.ok()) {
    log.Error("stop the pool", {{"error", st.error().ToString()}});
    return 1;
  }
  return 0;
}

int PoolStatusCommand(const std::string& config_path) {
  auto cfg = Load(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "cask-runtime pool: %s\n", cfg.error().ToString().c_str());
    return 1;
  }
  auto s = pool::QueryStatus(cfg->pool.socket);
  if (!s.ok()) {
    std::printf("socket %s: not answering (%s)\n", cfg->pool.socket.c_str(), s.error().ToString().c_str());
    return 1;
  }
  std::printf("socket %s\nsize %u\nready %u\nbooting %u\nhanded_over %llu\nvm %u vCPU, %u MiB, kernel %s, %s\n",
              cfg->pool.socket.c_str(), s->size, s->ready, s->booting,
              static_cast<unsigned long long>(s->handed_over), s->key.vcpus, s->key.memory_mib,
              s->key.kernel.c_str(), s->key.nic ? "one NIC" : "no NIC");
  return 0;
}

}  // namespace cask::runtime
