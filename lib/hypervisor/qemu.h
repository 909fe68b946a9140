// The QEMU backend of Hypervisor (hypervisor.h).
//
// A QemuVm's state directory holds:
//   agent.sock      QEMU's virtio-serial chardev (serial channel)
//   qmp.sock        QMP; the Vm keeps one connection open from Start to Stop
//   virtiofsd.sock  virtiofsd's vhost-user socket (with a shared dir)
//   console.log     the tail of the guest's ttyS0 (at most 512 KiB; the
//                   console reaches the host through a socket pair that a
//                   pump thread of the Vm always drains into a bounded ring)
//   qemu.log        QEMU's stderr (quoted in start errors)
//   virtiofsd.log   the tail of virtiofsd's stderr (at most 128 KiB, read
//                   through a pipe by the same pump)
// QEMU and virtiofsd are children of the calling process, owned by
// ChildProcess; no parent-death signal is set (a shim daemon owns them for
// its whole life).
#pragma once

#include <chrono>
#include <memory>

#include "lib/hypervisor/hypervisor.h"

namespace cask::hypervisor {

// How long Start waits for QEMU to answer on QMP, and the Vm destructor's
// Stop grace.
inline constexpr std::chrono::milliseconds kQemuStartTimeout{30000};
inline constexpr std::chrono::milliseconds kVirtiofsdStartTimeout{10000};
inline constexpr std::chrono::milliseconds kDefaultStopGrace{3000};

// NewQemu() with the host facts given instead of probed (tests).
std::unique_ptr<Hypervisor> NewQemuWithHost(const HostProbe& host);

}  // namespace cask::hypervisor
