// The pool's wire protocol (docs/architecture.md, "Pool of ready VMs").
//
// A unix SOCK_SEQPACKET socket (root only, 0600). Every message is one
// packet: a JSON object of at most kMaxMessageBytes, with at most
// kMaxFds file descriptors attached (SCM_RIGHTS). A conversation:
//
//   client -> pool   {"op":"status"}
//   pool -> client   {"ok":true,"size":N,"ready":R,"booting":B,"key":{...}}
//
//   client -> pool   {"op":"take","key":{...VmKey...}}
//   pool -> client   {"ok":false,"reason":"..."}                 (nothing to hand over)
//                    {"ok":true,"vm":{...},"key":{...}} + 6 fds   (a VM; fds in kFd* order)
//                    + 2 fds (kFdTap, kFdTapNetns) when "vm" has a "nic"
//   client -> pool   {"op":"adopted"}   once the VM's directory was renamed
//                    away and its processes moved out of the pool's cgroup;
//                    closing the connection instead makes the pool kill the VM.
//
// Both sides are root processes of the same installation; each still checks
// what it receives (sizes, types, fd kinds) so that a confused peer gives an
// error, never a crash or a leak.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/hypervisor/handover.h"
#include "lib/hypervisor/hypervisor.h"

namespace cask::pool {

inline constexpr size_t kMaxMessageBytes = 64 * 1024;
inline constexpr size_t kMaxFds = 8;
// The fds of a take reply, in this order.
enum HandoverFd { kFdVmmPidfd, kFdVirtiofsdPidfd, kFdQmp, kFdConsole, kFdQemuStderr, kFdVirtiofsdStderr, kHandoverFds };
// A VM with a NIC also sends its TAP's fd and its holding namespace's.
enum HandoverNicFd { kFdTap = kHandoverFds, kFdTapNetns, kHandoverFdsWithNic };
static_assert(kHandoverFdsWithNic <= kMaxFds);

struct Message {
  nlohmann::json body;
  std::vector<UniqueFd> fds;
};

// One packet. `fds` are not closed.
Status SendMessage(int sock, const nlohmann::json& body, const std::vector<int>& fds = {});
// The next packet, waiting up to `timeout`: DEADLINE_EXCEEDED, UNAVAILABLE
// when the peer closed, INVALID_ARGUMENT for a truncated packet, too many
// fds or a body that is not a JSON object (received fds are closed then).
Result<Message> ReceiveMessage(int sock, std::chrono::milliseconds timeout);

// A connected SOCK_SEQPACKET client socket: NOT_FOUND when `path` does not
// exist, UNAVAILABLE when nobody listens.
Result<UniqueFd> Connect(const std::string& path);
// Binds and listens on `path` (a stale socket file is replaced), mode 0600.
Result<UniqueFd> Listen(const std::string& path);

// What a ready VM must match for a pod to take it: every setting that
// changes the VM QEMU boots (VmSettings minus the per-pod fields), and
// whether it has a NIC (one virtio-net NIC on a TAP in the pool's holding
// namespace). `nic` alone is not symmetric: a pod that wants a NIC (it has
// a network namespace) needs a VM with one; a pod without a namespace takes
// either, and a NIC it does not want stays unplugged: its TAP stays down
// in the holding namespace, where no other link is, until the VM exits. So
// one pool serves both kinds of pod.
struct VmKey {
  std::string qemu_path, kernel, initrd, machine_type, accel, channel;
  uint32_t vcpus = 0, memory_mib = 0, tcg_tb_size_mib = 0;
  std::string kernel_params;
  std::vector<std::string> extra_kernel_params;
  std::string virtiofsd_path, virtiofs_cache, runas;
  bool free_page_reporting = false, debug = false;
  bool nic = false;  // KeyOf: VmSettings::wants_ready_nic or nics given
  bool operator==(const VmKey&) const = default;
};
VmKey KeyOf(const hypervisor::VmSettings& s);
nlohmann::json ToJson(const VmKey& k);
// INVALID_ARGUMENT naming a missing or mistyped field; strings are bounded.
Result<VmKey> KeyFromJson(const nlohmann::json& j);
// "" when `have` fits `wanted` (equal, but for `nic` as above), else the
// first difference: "memory_mib: wanted 512, the pool's is 256".
std::string Mismatch(const VmKey& wanted, const VmKey& have);

// The take reply's "vm" object and fds for `h` (the fds stay owned by `h`).
nlohmann::json HandoverJson(const hypervisor::VmHandover& h);
std::vector<int> HandoverFds(const hypervisor::VmHandover& h);
// The other way: checks the JSON, that each fd is what it should be (the
// pidfds name the described pids, the QMP and console fds are sockets) and
// that the state dir lies directly below `vms_dir` (the pool's); with a
// "nic" object, that the TAP fd is a /dev/net/tun fd, the namespace fd a
// network namespace, the name and MAC well formed (VmHandover::nic). Takes
// ownership of `fds` (closed on error).
Result<hypervisor::VmHandover> HandoverFromMessage(const nlohmann::json& vm, std::vector<UniqueFd> fds,
                                                   const std::string& vms_dir);

}  // namespace cask::pool
