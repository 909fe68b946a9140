// Entry point of a containerd shim v2 binary: parses the flags and runs
// `start`, `delete`, or the daemon with the given service.
//
// Output contract (what containerd reads from stdout): on success `start`
// prints only the address, `delete` only the raw DeleteResponse bytes;
// failures go to stderr (containerd shows them) with a non-zero exit.
#pragma once

#include "lib/shim/daemon.h"
#include "lib/shim/delete.h"

namespace cask::shim {

inline constexpr char kVersion[] = "0.1.0";

// `cleanup` runs in `delete` (see delete.h); may be empty.
int Main(int argc, char** argv, const ServiceFactory& factory, const CleanupHook& cleanup = {});

}  // namespace cask::shim
