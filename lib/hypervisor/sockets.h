// Socket helpers for the hypervisor backends (close-on-exec everywhere).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::hypervisor {

using Clock = std::chrono::steady_clock;

// One connect(2) attempt to a unix stream socket. A socket that does not
// exist (yet) is NOT_FOUND; one nobody listens on (refused/reset) is
// UNAVAILABLE, so callers know when retrying makes sense.
Result<UniqueFd> ConnectUnixOnce(const std::string& path);
// One connect(2) attempt to AF_VSOCK cid:port.
Result<UniqueFd> ConnectVsockOnce(uint32_t cid, uint32_t port);

// The agent channel of a VM (hypervisor.h, Vm::ConnectAgent): connects
// to the unix socket `sock` (serial) or to vsock `cid`:kAgentVsockPort,
// retrying every 10 ms while the socket is absent or not listening, until
// `timeout` (DEADLINE_EXCEEDED naming the channel). Before each attempt
// `abandon` is asked whether to give up; the error it returns is returned
// as is (the VM was stopped or has exited). Other connect errors end the
// wait at once. Shared by every backend's ConnectAgent.
Result<UniqueFd> ConnectAgentChannel(bool serial, const std::string& sock, uint32_t cid,
                                     std::chrono::milliseconds timeout,
                                     const std::function<std::optional<Error>(const std::string& what)>& abandon);

// Waits until fd is readable (or hung up) or the deadline passes:
// DEADLINE_EXCEEDED naming `what`.
Status WaitReadable(int fd, Clock::time_point deadline, const std::string& what);

// Milliseconds left until the deadline, at least 0.
int MillisLeft(Clock::time_point deadline);

}  // namespace cask::hypervisor
