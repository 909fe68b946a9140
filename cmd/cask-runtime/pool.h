// `cask-runtime pool serve|status`: the node's pool of ready VMs
// (lib/pool/pool.h), run in the foreground (by systemd, deploy/cask-pool.service,
// or started detached by a shim when pool.autostart is set).
#pragma once

#include <string>

namespace cask::runtime {

// Serves until SIGTERM, SIGINT or SIGHUP, then stops every idle VM. Returns
// the exit status (1 when the pool cannot start, e.g. another pool holds
// pool.state_dir).
int PoolServe(const std::string& config_path);

// Prints the pool's socket, size and ready count; 1 when it does not answer.
int PoolStatusCommand(const std::string& config_path);

}  // namespace cask::runtime
