// `cask-runtime run`: from command-line options to a validated container
// spec, before anything is booted. No side effects.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/oci/spec.h"

namespace cask::runtime {

struct RunRequest {
  std::string rootfs;  // --rootfs DIR (exclusive with bundle)
  std::string bundle;  // --bundle DIR: DIR/config.json, root.path relative to DIR
  std::vector<std::string> command;  // after "--"; required with --rootfs
  bool tty = false;                  // -t
  std::optional<uint64_t> memory_mib;  // --memory: container memory limit
  std::optional<uint32_t> cpus;        // --cpus: VM vcpus and container cpu quota
  std::string hostname;                // --hostname; empty: keep the spec's
};

struct PreparedContainer {
  oci::Spec spec;      // validated; process present
  std::string rootfs;  // absolute host directory, checked to exist
  bool readonly_rootfs = false;
};

// Builds the spec: with --rootfs from oci::DefaultSpec(command, tty) with a
// writable root; with --bundle from DIR/config.json (the command, when
// given, replaces process.args; -t forces process.terminal). Applies
// --memory (linux.resources.memory.limit), --cpus (cpu quota/period) and
// --hostname. Every error is INVALID_ARGUMENT (or NOT_FOUND for a missing
// path) and names the option or file at fault.
Result<PreparedContainer> PrepareContainer(const RunRequest& req);

}  // namespace cask::runtime
