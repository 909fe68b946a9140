// Running a little code inside another network namespace without moving
// the caller: the function runs on a short-lived thread of its own that
// joins the namespace (setns affects only the calling thread), so the
// caller's other threads stay where they are. Objects bound to a namespace
// at creation (netlink sockets, /dev/net/tun fds, listening sockets) keep
// working from any thread afterwards.
#pragma once

#include <functional>
#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::net {

// Opens a network namespace file (/var/run/netns/X, /proc/<pid>/ns/net)
// and checks that it is one (NOT_FOUND if absent, INVALID_ARGUMENT if the
// file is not a network namespace).
Result<UniqueFd> OpenNetns(const std::string& path);

// Runs `fn` on a new thread that has joined the namespace `netns_fd`, and
// waits for it. A failing setns is the error.
Status RunInNetns(int netns_fd, const std::function<Status()>& fn);

// Runs `fn` on a new thread that has unshared a new, empty network
// namespace, and waits for it. The namespace lives as long as something
// holds it (an fd opened or a bind mount made by `fn`); otherwise it goes
// with the thread. A failing unshare is the error.
Status RunInNewNetns(const std::function<Status()>& fn);

}  // namespace cask::net
