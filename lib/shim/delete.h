// The `delete` action: containerd runs `<shim> ... -bundle DIR delete` to
// clean up after a shim that died, and reads a DeleteResponse from stdout.
//
// containerd runs it after every task deletion, when a shim died, and at
// start-up for bundles whose shim cannot be reached -- possibly while the
// daemon still serves other containers of the pod. So it is idempotent,
// quick (containerd gives it 5 s) and touches only this task's bundle:
// it unmounts <bundle>/rootfs (every stacked mount) and reports the task as
// killed (exit status 137, exited now). The caller writes the returned bytes
// -- a serialized containerd.task.v2.DeleteResponse -- to stdout, raw.
#pragma once

#include <functional>
#include <string>

#include "lib/base/result.h"
#include "lib/shim/events.h"
#include "lib/shim/flags.h"

namespace cask::shim {

// 128 + SIGKILL: what containerd records for a task cleaned up this way.
inline constexpr uint32_t kDeleteExitStatus = 137;

struct DeleteResult {
  uint32_t pid = 0;
  uint32_t exit_status = kDeleteExitStatus;
  Timestamp exited_at;
};

// Serialized containerd.task.v2.DeleteResponse.
std::string EncodeDeleteResponse(const DeleteResult& r);

// Unmounts every mount stacked on `dir` (MNT_DETACH when busy). A directory
// that is not a mount point, or does not exist, is fine.
Status UnmountAll(const std::string& dir);

// Runtime-specific cleanup of what a dead shim left behind (cask: its VM).
using CleanupHook = std::function<Status(const std::string& bundle)>;

struct DeleteOutput {
  std::string response;  // the bytes for stdout
  std::string warnings;  // for stderr (containerd logs them as cleanup warnings)
};

// Removes the shim socket named by <bundle>/address when nothing accepts on
// it any more (the shim was killed); a live shim's socket is left alone.
Status RemoveDeadSocket(const std::string& bundle);

// Does the cleanup for `bundle` (the -bundle flag, else the cwd): the hook
// first, then the rootfs, then a dead shim's socket. A failing hook is a warning, not a failure: the
// task is gone either way.
Result<DeleteOutput> RunDelete(const Flags& flags, const std::string& bundle, const CleanupHook& hook = {});

}  // namespace cask::shim
