#include "lib/shim/delete.h"

#include <sys/mount.h>

#include <cerrno>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "lib/base/fs.h"
#include "lib/shim/proto_time.h"

namespace cask::shim {

std::string EncodeDeleteResponse(const DeleteResult& r) {
  ::containerd::task::v2::DeleteResponse resp;
  resp.set_pid(r.pid);
  resp.set_exit_status(r.exit_status);
  SetTimestamp(resp.mutable_exited_at(), r.exited_at);
  return resp.SerializeAsString();
}

Status UnmountAll(const std::string& dir) {
  // Each umount removes the top of the stack; a bounded loop, as a broken
  // mount table must not hang `delete`.
  for (int i = 0; i < 64; ++i) {
    if (::umount2(dir.c_str(), 0) == 0) continue;
    int err = errno;
    if (err == EINVAL || err == ENOENT) return Ok();  // not (or no longer) a mount point
    if (err == EBUSY) {
      if (::umount2(dir.c_str(), MNT_DETACH) == 0) continue;
      err = errno;
    }
    return Error::Sys(err, "unmount " + dir);
  }
  return Error::Internal("unmount " + dir + ": still mounted after 64 unmounts");
}

Result<DeleteOutput> RunDelete(const Flags& flags, const std::string& bundle, const CleanupHook& hook) {
  if (bundle.empty()) return Error::InvalidArgument("delete: no bundle directory");
  DeleteOutput out;
  if (hook) {
    if (Status st = hook(bundle); !st.ok()) out.warnings = "delete " + flags.id + ": " + st.error().ToString() + "\n";
  }
  CASK_TRY_CTX(UnmountAll(JoinPath(bundle, "rootfs")), "delete " + flags.id);
  DeleteResult r;
  r.exited_at = std::chrono::system_clock::now();
  out.response = EncodeDeleteResponse(r);
  return out;
}

}  // namespace cask::shim
