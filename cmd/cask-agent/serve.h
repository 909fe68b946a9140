// Serving the agent channel: the virtio-serial loop (one host connection at
// a time, for the life of the VM) and the vsock accept loop.
#pragma once

#include "cmd/cask-agent/agent.h"
#include "lib/base/log.h"
#include "lib/rpc/server.h"

namespace cask::agent {

// Opens the `cask.agent` port (retrying while virtio_console probes), waits
// for the host, serves it until it disconnects, and starts over. When the
// host goes away, blocked calls of that connection are cancelled
// (Agent::CancelBlockingCalls) so the connection can finish. Never returns.
[[noreturn]] void ServeSerialForever(rpc::Server& server, Agent& agent, const Logger& log);

// Listens on AF_VSOCK port kVsockPort and serves every connection; returns
// after server.Shutdown() or when listening fails.
Status ServeVsock(rpc::Server& server, const Logger& log);

}  // namespace cask::agent
