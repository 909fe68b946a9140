#include "lib/net/tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace cask::net {

Result<UniqueFd> CreateTap(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return Error::InvalidArgument("TAP name \"" + name + "\" must have 1 to 15 characters");
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return Error::Sys(errno == ENOENT ? Code::kNotFound : Code::kFailedPrecondition, errno, "open /dev/net/tun");
  UniqueFd owned(fd);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    return Error::Sys(err == EBUSY || err == EEXIST ? Code::kAlreadyExists : Code::kInternal, err,
                      "create TAP " + name + " (TUNSETIFF)");
  }
  return owned;
}

}  // namespace cask::net
