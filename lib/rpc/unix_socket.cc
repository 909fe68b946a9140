// ListenUnix / ConnectUnix (declared in server.h).
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/rpc/server.h"

namespace cask::rpc {
namespace {

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return Error::InvalidArgument("unix socket path is empty");
  if (path.size() >= sizeof(addr.sun_path))
    return Error::InvalidArgument("unix socket path too long (" + std::to_string(path.size()) + " bytes, max " +
                                  std::to_string(sizeof(addr.sun_path) - 1) + "): " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

Result<UniqueFd> ListenUnix(const std::string& path) {
  CASK_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error::AlreadyExists(path + " exists and is not a socket");
    // Only a stale socket (nobody accepting) is replaced.
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      return Error::AlreadyExists("a server is already listening on " + path);
    if (::unlink(path.c_str()) < 0 && errno != ENOENT) return Error::Sys(errno, "remove stale socket " + path);
  } else if (errno != ENOENT) {
    return Error::Sys(errno, "stat " + path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::Sys(errno, "socket(AF_UNIX) for " + path);
  // The socket inode's mode is what bind() gives the file (minus umask), so
  // the path is never reachable with wider permissions.
  if (::fchmod(fd.get(), 0600) < 0) return Error::Sys(errno, "fchmod socket for " + path);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return Error::Sys(errno, "bind " + path);
  if (::chmod(path.c_str(), 0600) < 0) {
    int e = errno;
    ::unlink(path.c_str());
    return Error::Sys(e, "chmod 0600 " + path);
  }
  if (::listen(fd.get(), SOMAXCONN) < 0) {
    int e = errno;
    ::unlink(path.c_str());
    return Error::Sys(e, "listen on " + path);
  }
  return fd;
}

Result<UniqueFd> ConnectUnix(const std::string& path) {
  CASK_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::Sys(errno, "socket(AF_UNIX) for " + path);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return Error::Sys(errno, "connect to " + path);
  return fd;
}

}  // namespace cask::rpc
