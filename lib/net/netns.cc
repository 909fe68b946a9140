#include "lib/net/netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <optional>
#include <thread>

namespace cask::net {

Result<UniqueFd> OpenNetns(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Error::Sys(errno == ENOENT ? Code::kNotFound : Code::kInternal, errno, "open network namespace " + path);
  UniqueFd owned(fd);
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) return Error::Sys(Code::kInvalidArgument, errno, path + " is not a namespace file");
  if (type != CLONE_NEWNET) return Error::InvalidArgument(path + " is not a network namespace");
  return owned;
}

Status RunInNetns(int netns_fd, const std::function<Status()>& fn) {
  std::optional<Status> result;
  std::thread t([&] {
    // A fresh thread shares the fs struct with the process; a network
    // namespace needs nothing unshared, so setns applies to this thread.
    if (::setns(netns_fd, CLONE_NEWNET) != 0) {
      result = Error::Sys(errno, "join the network namespace (setns)");
      return;
    }
    result = fn();
  });
  t.join();
  return std::move(*result);
}

Status RunInNewNetns(const std::function<Status()>& fn) {
  std::optional<Status> result;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      result = Error::Sys(errno, "unshare(CLONE_NEWNET)");
      return;
    }
    result = fn();
  });
  t.join();
  return std::move(*result);
}

}  // namespace cask::net
