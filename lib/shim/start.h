// The `start` action: containerd runs `<shim> ... start` once per task and
// reads the shim's ttrpc address from its stdout.
//
// Run by containerd with cwd = the task's bundle. Decides the pod grouping
// from config.json, and either
//  - for a pod container: writes the sandbox shim's address into this
//    bundle's `address` file and returns it, spawning nothing; or
//  - otherwise: binds the shim socket (reusing it when a live shim already
//    accepts on it), re-executes the shim binary as the daemon (socket as
//    fd 3, own process group, stdio on /dev/null so containerd's
//    CombinedOutput returns), writes `address` and `shim.pid`.
// The caller prints the returned address and nothing else.
#pragma once

#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/shim/flags.h"

namespace cask::shim {

struct StartParams {
  Flags flags;
  std::string bundle;     // the cwd containerd gave us
  std::string self_exe;   // absolute path of this binary (/proc/self/exe)
  std::string options;    // stdin: a serialized google.protobuf.Any, may be empty
};

// Returns the address to print ("unix:///run/containerd/s/<hex>").
Result<std::string> RunStart(const StartParams& params);

// Binds a unix listening socket at `path` (mode 0600, parent created). If
// the path is in use and a server accepts on it, returns an invalid fd and
// `in_use` = true; a stale socket is removed and bound again.
struct BoundSocket {
  UniqueFd fd;
  bool in_use = false;
};
Result<BoundSocket> BindShimSocket(const std::string& path);

}  // namespace cask::shim
