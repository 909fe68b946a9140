// virtiofsd: the vhost-user daemon that serves the shared directory to the
// guest's virtio-fs device. One per VM; it exits by itself when QEMU
// disconnects (its vhost-user socket closes).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "lib/base/process.h"
#include "lib/base/result.h"

namespace cask::hypervisor {

struct VirtiofsdOptions {
  std::string binary;       // hypervisor.virtiofsd_path
  std::string socket_path;  // the vhost-user socket virtiofsd listens on
  std::string source;       // absolute host directory to export
  std::string cache;        // hypervisor.virtiofs_cache: auto | always | none
  std::string log_path;     // virtiofsd's stderr (appended)
};

// <binary> --socket-path=<sock> -o source=<dir> -o cache=<cache>
std::vector<std::string> VirtiofsdArgv(const VirtiofsdOptions& o);

// INVALID_ARGUMENT for a cache word other than auto/always/none (naming
// hypervisor.virtiofs_cache) or a source that virtiofsd's option parser
// would split (a ',' in the path) or that is relative.
Status ValidateVirtiofsdOptions(const VirtiofsdOptions& o);

// Spawns virtiofsd (stdin/stdout /dev/null, stderr to log_path) and waits
// until its socket exists, up to `timeout`. If it exits or times out first,
// it is killed and reaped, and the error carries the tail of its log.
Result<ChildProcess> StartVirtiofsd(const VirtiofsdOptions& o, std::chrono::milliseconds timeout);

}  // namespace cask::hypervisor
