// Signals that `cask-runtime run` receives and forwards to the container.
#pragma once

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::runtime {

// The signals forwarded: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2
// and SIGWINCH.
const std::vector<int>& ForwardedSignals();

// Blocks the forwarded signals in the calling thread -- call it before any
// other thread exists, so that every thread inherits the mask and none is
// interrupted -- and delivers them one by one to `handler` on a thread of
// its own (signalfd). The mask is left in place on destruction: a signal
// arriving during cleanup must not kill the process before it has removed
// the VM.
class SignalForwarder {
 public:
  static Result<std::unique_ptr<SignalForwarder>> Start(std::function<void(int)> handler);
  ~SignalForwarder();  // stops and joins the thread
  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;

 private:
  SignalForwarder() = default;
  void Loop();

  std::function<void(int)> handler_;
  UniqueFd signal_fd_;
  UniqueFd stop_fd_;  // eventfd
  std::thread thread_;
};

}  // namespace cask::runtime
