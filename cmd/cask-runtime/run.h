// `cask-runtime run`: boot a VM, run one container in it, exit with its
// status.
#pragma once

#include <string>

#include "cmd/cask-runtime/run_spec.h"

namespace cask::runtime {

// Exit statuses of `run` besides the container's own (docker/podman
// convention).
inline constexpr int kExitRuntimeError = 125;    // cask itself failed
inline constexpr int kExitCannotExecute = 126;   // the command is not executable
inline constexpr int kExitCommandNotFound = 127; // the command does not exist

struct RunOptions {
  RunRequest request;
  std::string config_path;  // --config; empty: config::LoadDefault()
  std::string id;           // --id; empty: a random one
  bool interactive = false; // -i: keep stdin open and copy ours into it
  bool timing = false;      // --timing: where the time went, on stderr
  bool debug = false;       // --debug: log at debug level
};

// Runs the container. Validates everything before booting; whatever
// happens (error, signal) the VM and every file, mount and process it made
// are gone when this returns. Returns the exit status for main().
int Run(const RunOptions& opts);

}  // namespace cask::runtime
