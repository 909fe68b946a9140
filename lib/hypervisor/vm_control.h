// The control state that every Vm over a QEMU process shares, whether it
// booted the VM (QemuVm, qemu.cc) or adopted a running one (AdoptedVm,
// adopted_vm.cc): the once-only Stop, and the QMP commands without
// arguments behind Pause and Resume.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>

#include "lib/base/result.h"
#include "lib/hypervisor/qmp.h"

namespace cask::hypervisor {

// Vm::Stop's contract: the teardown runs once, and every call (also a
// concurrent one, which waits) returns the first call's result. `stopping`
// turns true before the teardown starts, so calls that need a live VM
// (ConnectAgent, QMP) fail at once. An owner that gives its VM away
// (QemuVm::Detach) sets `result` itself under `mu`, without a teardown.
//
// Thread safety: Run and anything reading `result` hold `mu`.
struct StopOnce {
  Status Run(const std::function<Status()>& teardown);

  std::mutex mu;
  std::atomic<bool> stopping{false};
  std::optional<Status> result;  // under mu
};

// Runs a QMP command without arguments ("stop", "cont") on `qmp`, under
// `qmp_mu`, with a 5 s timeout. FAILED_PRECONDITION once the VM is stopping
// or when there is no QMP connection; QMP's own error otherwise.
Status RunQmpCommand(QmpClient& qmp, std::mutex& qmp_mu, const StopOnce& stop, const char* command);

}  // namespace cask::hypervisor
