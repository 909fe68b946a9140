// The shim daemon framework (the long-lived process `start` spawns, which
// serves containerd's Task API over ttrpc), independent of what
// the shim serves: log pipe, signals, event publisher, ttrpc server on the
// socket inherited from `start`, orderly exit. The Task service plugs in
// through ShimService.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "lib/base/log.h"
#include "lib/base/result.h"
#include "lib/shim/flags.h"
#include "lib/shim/publisher.h"

namespace cask::rpc {
class Server;
}

namespace cask::shim {

// What the framework hands to the service. Everything outlives the service.
struct DaemonContext {
  Flags flags;
  std::string bundle;          // the daemon's cwd: the first task's bundle
  std::string socket_path;     // where containerd connects (removed at exit)
  Logger log;                  // writes to containerd's log pipe
  EventPublisher* events = nullptr;
  // Asks the daemon to exit once the current call has been answered. Call it
  // from Shutdown when no task is left.
  std::function<void()> request_exit;
};

class ShimService {
 public:
  virtual ~ShimService() = default;
  // Registers the ttrpc methods. Called once, before serving.
  virtual void Register(rpc::Server& server) = 0;
  // The daemon is going away (exit requested or SIGTERM): release every
  // resource (VMs, mounts) and end blocked calls. Called once, before the
  // server stops; calls arriving afterwards must fail cleanly.
  virtual void Stop() = 0;
};

using ServiceFactory = std::function<Result<std::unique_ptr<ShimService>>(DaemonContext&)>;

struct DaemonParams {
  Flags flags;
  std::string bundle;        // cwd
  std::string ttrpc_address; // $TTRPC_ADDRESS, may be empty
  int listen_fd = 3;         // inherited from start (ignored when flags.socket is set)
};

// Runs until exit is requested or SIGTERM/SIGINT arrives. Returns the exit
// code of the process.
int RunDaemon(const DaemonParams& params, const ServiceFactory& factory);

}  // namespace cask::shim
