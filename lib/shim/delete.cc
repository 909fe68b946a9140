#include "lib/shim/delete.h"

#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <cerrno>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "lib/base/fs.h"
#include "lib/sys/unmount.h"
#include "lib/shim/address.h"
#include "lib/shim/proto_time.h"

namespace cask::shim {

std::string EncodeDeleteResponse(const DeleteResult& r) {
  ::containerd::task::v2::DeleteResponse resp;
  resp.set_pid(r.pid);
  resp.set_exit_status(r.exit_status);
  SetTimestamp(resp.mutable_exited_at(), r.exited_at);
  return resp.SerializeAsString();
}

Status UnmountAll(const std::string& dir) { return sys::UnmountStack(dir); }

Status RemoveDeadSocket(const std::string& bundle) {
  auto addr = ReadFile(JoinPath(bundle, "address"));
  if (!addr.ok()) return Ok();  // never started, or a pod container's file is gone
  CASK_ASSIGN_OR_RETURN(std::string path, SocketPath(*addr));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::Sys(errno, "socket");
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), std::min(path.size(), sizeof(sa.sun_path) - 1));
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  int err = errno;
  ::close(fd);
  if (rc == 0) return Ok();  // a live shim (e.g. the pod's) still serves it
  if (err == ECONNREFUSED && ::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Error::Sys(errno, "remove dead shim socket " + path);
  return Ok();
}

Result<DeleteOutput> RunDelete(const Flags& flags, const std::string& bundle, const CleanupHook& hook) {
  if (bundle.empty()) return Error::InvalidArgument("delete: no bundle directory");
  DeleteOutput out;
  if (hook) {
    if (Status st = hook(bundle); !st.ok()) out.warnings = "delete " + flags.id + ": " + st.error().ToString() + "\n";
  }
  CASK_TRY_CTX(UnmountAll(JoinPath(bundle, "rootfs")), "delete " + flags.id);
  if (Status st = RemoveDeadSocket(bundle); !st.ok()) out.warnings += "delete " + flags.id + ": " + st.error().ToString() + "\n";
  DeleteResult r;
  r.exited_at = std::chrono::system_clock::now();
  out.response = EncodeDeleteResponse(r);
  return out;
}

}  // namespace cask::shim
