// Handing a running VM from one owner to another (a pool of ready VMs,
// lib/pool, to the shim of a pod).
//
// The giver calls Vm::Detach(): its Vm stops watching and logging (its
// threads end), forgets its processes without stopping them, and returns
// everything an owner needs as a VmHandover of fds: pidfds of QEMU and
// virtiofsd (the only handles on them: they stay the giver's children, so
// the giver keeps reaping them), the negotiated QMP connection, the host end
// of the console and QEMU's and virtiofsd's stderr pipes. The state
// directory (sockets, logs, host-processes) stays where it is.
//
// The taker calls AdoptVm(): the pod's cgroup is made (VmSettings::cgroup)
// and the processes are moved into it, host-processes is rewritten, and the
// returned Vm satisfies every contract of hypervisor.h with processes that
// are not its children: it waits on pidfds and kills with
// pidfd_send_signal. Its exit status is not known (Exited() only).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/hypervisor/host_cgroup.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/hypervisor/process_identity.h"
#include "lib/sys/pidfd.h"

namespace cask::hypervisor {

// The console tail carried across a handover (boot messages, for error
// messages of the taker).
inline constexpr size_t kHandoverConsoleTailBytes = 16 * 1024;

struct VmHandover {
  std::string state_dir;  // the VM's directory (agent.sock, qmp.sock, logs, host-processes)
  Channel channel = Channel::kSerial;
  uint32_t guest_cid = 0;  // vsock only
  ProcessIdentity vmm, virtiofsd;
  sys::Pidfd vmm_pidfd, virtiofsd_pidfd;
  UniqueFd qmp;               // connected, capabilities negotiated
  UniqueFd console;           // host end of the console socket pair
  UniqueFd qemu_stderr;       // read end of QEMU's stderr pipe
  UniqueFd virtiofsd_stderr;  // read end of virtiofsd's stderr pipe
  std::string console_tail;   // at most kHandoverConsoleTailBytes
  // The VM's NIC, if it has one (its giver made the TAP; not Vm::Detach):
  // AdoptVm keeps it for Vm::TakeReadyNic.
  std::optional<ReadyNic> nic;
  // Giver side only: the cgroup the processes run in now (never sent).
  HostCgroup cgroup;
};

// Takes over the VM `h` describes, for `cfg` (id, state_dir == h.state_dir,
// cgroup, console_logger are used; cgroup.enabled is required:
// FAILED_PRECONDITION otherwise, the processes must leave the giver's
// cgroup). On error the VM is stopped (killed through its pidfds, the pod
// cgroup made here removed) and nothing of `h` is left to the caller.
Result<std::unique_ptr<Vm>> AdoptVm(VmHandover h, const VmSettings& cfg);

// The name of a pod's cgroup below VmCgroupSettings::parent:
// "<id>-<8 hex digits of a hash of the state dir's parent>" (sandbox ids are
// unique within one state dir only).
std::string PodCgroupName(const std::string& id, const std::string& state_dir);

}  // namespace cask::hypervisor
