#include "lib/shim/start.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/shim/address.h"
#include "lib/shim/grouping.h"

namespace cask::shim {
namespace {

Result<sockaddr_un> UnixAddr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) return Error::InvalidArgument("socket path too long: " + path);
  std::memcpy(sa.sun_path, path.data(), path.size());
  return sa;
}

Result<UniqueFd> NewSocket() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::Sys(errno, "socket");
  return UniqueFd(fd);
}

bool Accepts(const sockaddr_un& sa) {
  auto s = NewSocket();
  if (!s.ok()) return false;
  return ::connect(s->get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0;
}

// oom_score_adj of the daemon: containerd's + 1 (we inherited containerd's),
// so that the kernel prefers the shim over containerd but not over tasks.
void AdjustOomScore(pid_t pid) {
  auto own = ReadFile("/proc/self/oom_score_adj");
  if (!own.ok()) return;
  int v = std::atoi(own->c_str());
  if (v < 1000) ++v;
  (void)WriteFile("/proc/" + std::to_string(pid) + "/oom_score_adj", std::to_string(v));
}

}  // namespace

Result<BoundSocket> BindShimSocket(const std::string& path) {
  CASK_TRY_CTX(MkdirAll(Dirname(path), 0700), "create shim socket directory");
  CASK_ASSIGN_OR_RETURN(sockaddr_un sa, UnixAddr(path));
  for (int attempt = 0; attempt < 2; ++attempt) {
    CASK_ASSIGN_OR_RETURN(UniqueFd fd, NewSocket());
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0) {
      if (::chmod(path.c_str(), 0600) != 0) return Error::Sys(errno, "chmod " + path);
      if (::listen(fd.get(), SOMAXCONN) != 0) return Error::Sys(errno, "listen on " + path);
      return BoundSocket{std::move(fd), false};
    }
    int err = errno;
    if (err != EADDRINUSE || attempt > 0) return Error::Sys(err, "bind " + path);
    if (Accepts(sa)) return BoundSocket{UniqueFd(), true};
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::Sys(errno, "remove stale socket " + path);
  }
  return Error::Internal("bind " + path + ": unreachable");
}

Result<std::string> RunStart(const StartParams& p) {
  const Flags& f = p.flags;
  if (f.id.empty()) return Error::InvalidArgument("start: -id is required");
  if (f.ns.empty()) return Error::InvalidArgument("start: -namespace is required");
  CASK_ASSIGN_OR_RETURN(std::string config, ReadFile(JoinPath(p.bundle, "config.json")));
  CASK_ASSIGN_OR_RETURN(auto annotations, ReadAnnotations(config));
  CASK_ASSIGN_OR_RETURN(Grouping g, DecideGrouping(annotations, f.id));
  const std::string address = SocketAddress(f.address, f.ns, g.group_id);
  const std::string address_file = JoinPath(p.bundle, "address");

  if (g.kind == ContainerKind::kPodContainer) {
    // The sandbox's shim serves this container; Create adds it to the VM.
    // Without a shim answering for the pod, containerd would only report a
    // failed dial of a hashed socket path: name the pod instead.
    CASK_ASSIGN_OR_RETURN(std::string pod_path, SocketPath(address));
    CASK_ASSIGN_OR_RETURN(sockaddr_un pod_sa, UnixAddr(pod_path));
    if (!Accepts(pod_sa))
      return Error::FailedPrecondition("container " + f.id + " belongs to pod " + g.group_id +
                                       ", which has no running shim: create and start the pod's sandbox first");
    CASK_TRY_CTX(WriteFileAtomic(address_file, address, 0644), "write address file");
    return address;
  }

  CASK_ASSIGN_OR_RETURN(std::string path, SocketPath(address));
  CASK_ASSIGN_OR_RETURN(BoundSocket sock, BindShimSocket(path));
  if (sock.in_use) {
    // A live shim for this group already exists (e.g. start retried).
    CASK_TRY_CTX(WriteFileAtomic(address_file, address, 0644), "write address file");
    return address;
  }

  std::vector<std::string> argv = {p.self_exe};
  for (auto& a : DaemonArgs(f)) argv.push_back(std::move(a));
  SpawnOptions so;
  so.extra_fds[3] = sock.fd.get();
  so.cwd = p.bundle;
  so.new_process_group = true;  // stdio default to /dev/null
  auto child = Spawn(argv, so);
  if (!child.ok()) {
    ::unlink(path.c_str());
    return std::move(child).error().Wrap("start shim daemon");
  }
  sock.fd.Reset();  // the daemon has it now
  AdjustOomScore(child->pid());
  Status st = WriteFileAtomic(address_file, address, 0644);
  if (st.ok()) st = WriteFileAtomic(JoinPath(p.bundle, "shim.pid"), std::to_string(child->pid()), 0644);
  if (!st.ok()) {
    // ChildProcess kills and reaps the daemon on the way out.
    ::unlink(path.c_str());
    return std::move(st).error().Wrap("start");
  }
  child->Release();  // the daemon outlives us
  return address;
}

}  // namespace cask::shim
