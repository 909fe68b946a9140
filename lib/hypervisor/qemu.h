// The QEMU backend of Hypervisor (hypervisor.h).
//
// A QemuVm's state directory holds:
//   agent.sock      QEMU's virtio-serial chardev (serial channel)
//   qmp.sock        QMP; the Vm keeps one connection open from Start to Stop
//   virtiofsd.sock  virtiofsd's vhost-user socket (with a shared dir)
//   console.log     the guest's ttyS0
//   qemu.log        QEMU's stderr (quoted in start errors)
//   virtiofsd.log   virtiofsd's stderr
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
