// The pool of ready VMs (`cask-runtime pool serve`): keeps pool.size VMs
// booted, each with its own virtiofsd exporting an empty shared directory
// and the agent answering Check, and hands one to a shim that asks
// (protocol.h). The pool then forgets it and boots a replacement.
//
// Layout: <pool.state_dir>/pool.lock (held while a pool, or its watchdog,
// runs: one pool per state dir), <pool.state_dir>/vms/<vm id>/ (a VM's
// directory in the SharedDir layout: mounts/, shared/, sockets, logs,
// host-processes), <pool.state_dir>/netns (the holding network namespace,
// net/holding_netns.h: each VM's NIC is a TAP there, down, until a pod
// takes it), the socket at pool.socket. Idle VMs live in
// <pool's cgroup>/<pool.cgroup_parent>/<vm id>-<hash>, one cgroup each.
//
// Nothing is leaked: Stop() (and the destructor) stops every idle VM; a
// pool that dies is cleaned up by its watchdog (StartWatchdog), and every
// start first kills what a predecessor left (KillLeftovers): the members of
// every cgroup below the pool's cgroup parent and the recorded processes of
// every VM directory (hypervisor/vm_leftovers.h), by identity, never by
// command line, then its holding namespace's mount (TAPs go with the VMs'
// QEMU processes, the last holders of their fds). A VM handed over leaves both before the taker acknowledges
// it (its directory is renamed away, its processes moved to the pod's
// cgroup), so no cleanup of the pool reaches it afterwards.
//
// Threads: one filler (boots VMs one at a time), one acceptor, one per
// connection being served (at most kMaxConnections), one reaper (the
// handed-over processes stay children of the pool; it reaps them once the
// taker stops them).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <list>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/config/config.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/net/holding_netns.h"
#include "lib/pool/protocol.h"

namespace cask::pool {

inline constexpr size_t kMaxConnections = 16;

// <state_dir>/vms
std::string VmsDir(const config::PoolConfig& p);
// <state_dir>/netns: the holding network namespace of the pool's TAPs.
std::string HoldingNetnsPath(const config::PoolConfig& p);
// The number of VMs the pool keeps: pool.size, lowered so that
// size * memory_mib stays within pool.idle_memory_mib (when set).
uint32_t TargetSize(const config::Config& c);

// Kills and removes what a pool left: every member of every cgroup below
// the pool's cgroup parent (relative to the caller's own cgroup, as the
// pool made them), the recorded processes of every directory in `vms_dir`,
// then each directory (mounts detached first), then the holding namespace
// beside `vms_dir` (HoldingNetnsPath). Missing is fine.
Status KillLeftovers(const std::string& vms_dir, const std::string& cgroup_parent);

// Forks a watchdog that runs KillLeftovers once the calling process is gone
// (EOF on a pipe only the caller holds), holding `lock_fd` (the pool's
// flock) until it is done. Call before starting threads.
Status StartWatchdog(const std::string& vms_dir, const std::string& cgroup_parent, int lock_fd);

// Takes the pool's lock (<state_dir>/pool.lock), waiting up to 10 s for a
// previous pool's watchdog to finish: FAILED_PRECONDITION when another pool
// keeps it.
Result<UniqueFd> LockStateDir(const config::PoolConfig& p);

struct PoolOptions {
  config::Config config;
  Logger log;
  // VMs are started through this; null: hypervisor::NewQemu().
  std::unique_ptr<hypervisor::Hypervisor> hypervisor;
};

struct PoolCounts {
  uint32_t target = 0;
  uint32_t ready = 0;
  uint32_t booting = 0;
  uint64_t handed_over = 0;
};

class Pool {
 public:
  // Cleans up after a predecessor (KillLeftovers), makes the holding
  // network namespace (without it, e.g. no CAP_SYS_ADMIN or /dev/net/tun,
  // the VMs get no NIC and VmKey::nic is false; logged), listens on
  // pool.socket and starts booting. The caller holds the lock
  // (LockStateDir).
  static Result<std::unique_ptr<Pool>> Start(PoolOptions o);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Stops accepting, stops every idle VM and the one booting, removes the
  // socket and the holding namespace. Idempotent.
  Status Stop();
  PoolCounts counts();

 private:
  struct ReadyVm;
  explicit Pool(PoolOptions o);
  void FillLoop();
  Result<std::unique_ptr<ReadyVm>> BootOne(uint64_t n);
  void AcceptLoop();
  void Serve(UniqueFd conn);
  void Take(int conn, const nlohmann::json& request);
  void DestroyVm(std::unique_ptr<ReadyVm> vm);
  void ReapLoop();
  void Reap(pid_t pid);

  const config::Config config_;
  const Logger log_;
  const std::string vms_dir_;
  const uint32_t target_;
  VmKey key_;
  std::unique_ptr<hypervisor::Hypervisor> hypervisor_;
  net::HoldingNetns holding_;  // not valid: the VMs get no NIC

  UniqueFd listen_;
  UniqueFd wake_;  // eventfd: Stop wakes the acceptor
  std::thread filler_, acceptor_, reaper_;

  std::mutex mu_;
  std::condition_variable cv_;  // a take, a finished connection, Stop
  bool stopping_ = false;
  std::deque<std::unique_ptr<ReadyVm>> ready_;
  uint32_t booting_ = 0;
  uint64_t handed_over_ = 0;
  size_t connections_ = 0;
  // Connection threads and whether each has finished (joined by the
  // acceptor when done, by Stop otherwise).
  std::list<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> workers_;
  std::vector<pid_t> released_;  // handed-over children still to reap
  bool stopped_ = false;
};

}  // namespace cask::pool
