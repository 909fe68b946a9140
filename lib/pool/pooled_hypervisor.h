// The shim's side of the pool: a Hypervisor whose TakeReady asks the pool
// (protocol.h) for a ready VM matching the pod's VmSettings, and whose
// Start boots cold through the wrapped backend.
//
// TakeReady never makes a pod fail: an absent or unreachable pool, an
// empty one, a VM that does not match (size, kernel, initrd, kernel
// parameters, any setting in VmKey), a pod that needs what a pool VM
// cannot have (TAPs of its own in VmSettings::nics, which QEMU gets at
// start; no pod cgroup to move the processes into) and any handover error
// are returned as errors, after which the caller boots cold (lib/sandbox
// does). Nothing of a failed take is left: the VM is killed (by pidfd, by
// the pool once the connection closes unacknowledged) and its renamed
// directory removed; the fds of its NIC are closed, so its TAP goes with
// QEMU.
//
// The NIC: a pod with a network namespace sets
// VmSettings::wants_ready_nic and gets only a VM that has one; the
// returned Vm's TakeReadyNic() then gives its TAP (in the pool's holding
// namespace) and guest MAC, which the caller moves into the pod's
// namespace and reconfigures (lib/net PodNetwork, the agent's
// ConfigureNetwork). Until it does, the TAP is down and reaches nothing.
//
// Adoption, in order: the VM's directory is renamed from the pool's
// <pool.state_dir>/vms/<vm> to cfg.state_dir (never replacing anything),
// AdoptVm moves QEMU and virtiofsd into the pod's cgroup, then the pool is
// told "adopted". Each step takes the VM out of one of the pool's cleanups
// (by directory, by cgroup), so a pool killed at any point kills the VM or
// leaves it to the shim, never both or neither.
#pragma once

#include <memory>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/config/config.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/pool/protocol.h"

namespace cask::pool {

struct PooledOptions {
  config::PoolConfig pool;
  std::string config_path;  // passed to an autostarted pool (--config); empty: its default
  std::unique_ptr<hypervisor::Hypervisor> cold;  // null: hypervisor::NewQemu()
  Logger log;
};

std::unique_ptr<hypervisor::Hypervisor> NewPooled(PooledOptions o);

// What `cask-runtime check`/`env` show: the pool's answer to "status".
struct PoolStatus {
  uint32_t size = 0, ready = 0, booting = 0;
  uint64_t handed_over = 0;
  VmKey key;
};
Result<PoolStatus> QueryStatus(const std::string& socket);

// Starts `runtime_path pool serve [--config path]` detached: its own
// session, stdio on /dev/null, not waited for, in its own cgroup
// (<root>/cask-pool.service in each hierarchy) so that a pod's cgroup
// teardown never reaches it.
Status StartPoolDaemon(const std::string& runtime_path, const std::string& config_path);

}  // namespace cask::pool
