#include "lib/hypervisor/vm_control.h"

#include <chrono>
#include <utility>

namespace cask::hypervisor {

Status StopOnce::Run(const std::function<Status()>& teardown) {
  std::lock_guard<std::mutex> l(mu);
  if (result) return *result;
  stopping = true;
  result = teardown();
  return *result;
}

Status RunQmpCommand(QmpClient& qmp, std::mutex& qmp_mu, const StopOnce& stop, const char* command) {
  if (stop.stopping) return Error::FailedPrecondition("the VM is stopped");
  std::lock_guard<std::mutex> l(qmp_mu);
  if (!qmp.connected()) return Error::FailedPrecondition("no QMP connection");
  auto r = qmp.Execute(command, nullptr, std::chrono::milliseconds(5000));
  if (!r.ok()) return std::move(r).error();
  return Ok();
}

}  // namespace cask::hypervisor
