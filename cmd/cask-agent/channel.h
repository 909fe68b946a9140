// The agent's end of the host channel (docs/architecture.md, "The agent
// channel"): a virtio-serial port named `cask.agent`, or AF_VSOCK port 1024.
// This file finds and opens the transport; serving it is serve.h.
#pragma once

#include <chrono>
#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::agent {

inline constexpr char kSerialPortName[] = "cask.agent";
inline constexpr unsigned kVsockPort = 1024;

// The device path (`dev_dir`/vportNpM) of the virtio-serial port whose
// `sys_dir`/vportNpM/name is `name`; NOT_FOUND when no port has that name.
Result<std::string> FindVirtioPort(const std::string& name, const std::string& sys_dir = "/sys/class/virtio-ports",
                                   const std::string& dev_dir = "/dev");

// FindVirtioPort, retried every 20 ms until `timeout` (the port appears
// once virtio_console has probed the device), then opened O_RDWR.
Result<UniqueFd> OpenVirtioPort(const std::string& name, std::chrono::milliseconds timeout);

// How a virtio-serial port looks from the guest: POLLHUP (with POLLIN)
// while no host is connected (reads then return 0 at once), POLLIN alone
// when a request is waiting.
enum class PortState { kHostAbsent, kReadable, kIdle };
PortState PollPort(int fd, int timeout_ms);

// AF_VSOCK stream socket listening on VMADDR_CID_ANY:`port`.
Result<UniqueFd> ListenVsock(unsigned port);

}  // namespace cask::agent
