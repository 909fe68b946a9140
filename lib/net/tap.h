// A TAP device: one owner of the /dev/net/tun fd that carries it.
#pragma once

#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::net {

// Creates TAP `name` in the calling thread's network namespace with
// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (the frame format QEMU's virtio-net
// backend expects) and returns the fd that holds it. The device is not
// persistent: it disappears when the last fd closes (or when deleted over
// netlink). ALREADY_EXISTS if a link of that name exists; NOT_FOUND
// without /dev/net/tun.
Result<UniqueFd> CreateTap(const std::string& name);

}  // namespace cask::net
