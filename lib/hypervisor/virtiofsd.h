// virtiofsd: the vhost-user daemon that serves the shared directory to the
// guest's virtio-fs device. One per VM; it exits by itself when QEMU
// disconnects (its vhost-user socket closes).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "lib/base/process.h"
#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/hypervisor/capped_log.h"

namespace cask::hypervisor {

struct VirtiofsdOptions {
  std::string binary;       // hypervisor.virtiofsd_path
  std::string socket_path;  // the vhost-user socket virtiofsd listens on
  std::string source;       // absolute host directory to export
  std::string cache;        // hypervisor.virtiofs_cache: auto | always | none
  std::vector<int> cgroup_procs_fds;  // joined at spawn (SpawnOptions::cgroup_procs_fds)
  // virtiofsd's stderr goes through a pipe into this bounded log (not a
  // file it appends to: a guest can make it log without end). Not owned;
  // must outlive StartVirtiofsd.
  CappedLog* log = nullptr;
};

struct VirtiofsdProcess {
  ChildProcess child;
  // The read end of virtiofsd's stderr, non-blocking; the caller keeps
  // draining it into the log (a full pipe would block virtiofsd).
  UniqueFd stderr_pipe;
};

// Reads what is available on a non-blocking fd into `log` (at most
// `max_bytes` per call, so one stream cannot starve others). Returns false
// at EOF or on an error other than EAGAIN.
bool DrainInto(int fd, CappedLog* log, size_t max_bytes);

// <binary> --socket-path=<sock> -o source=<dir> -o cache=<cache>
//   -o sandbox=namespace -o modcaps=-mknod:-fsetid
// virtiofsd confines itself (mount, pid and net namespaces, pivot_root into
// the shared directory, and its seccomp filter, which the C virtiofsd always
// installs); without CAP_MKNOD the guest cannot create device nodes through
// the share, and without CAP_FSETID it cannot keep a setgid bit on a file of
// a group it is not in, nor keep set-id bits across writes.
std::vector<std::string> VirtiofsdArgv(const VirtiofsdOptions& o);

// INVALID_ARGUMENT for a cache word other than auto/always/none (naming
// hypervisor.virtiofs_cache) or a source that virtiofsd's option parser
// would split (a ',' in the path) or that is relative.
Status ValidateVirtiofsdOptions(const VirtiofsdOptions& o);

// Spawns virtiofsd (stdin/stdout /dev/null, stderr into o.log) and waits
// until its socket exists, up to `timeout`. If it exits or times out first,
// it is killed and reaped, and the error carries the tail of its log.
Result<VirtiofsdProcess> StartVirtiofsd(const VirtiofsdOptions& o, std::chrono::milliseconds timeout);

}  // namespace cask::hypervisor
