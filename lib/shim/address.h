// Shim socket addresses, named as containerd's shim package names them.
//
// containerd never computes a shim's address itself: `start` prints it and
// writes it to <bundle>/address. By convention (and so that every container
// of a pod finds the same shim) it is
//   unix:///run/containerd/s/<hex sha256 of filepath.Join(address, ns, group)>
// The directory /run/containerd/s is fixed, whatever containerd's `state`.
#pragma once

#include <string>
#include <string_view>

#include "lib/base/result.h"

namespace cask::shim {

inline constexpr std::string_view kSocketDir = "/run/containerd/s";
inline constexpr std::string_view kUnixScheme = "unix://";
// sun_path holds 108 bytes; the Go shim refuses paths longer than 106.
inline constexpr size_t kMaxSocketPath = 106;

// Go's filepath.Clean for slash-separated paths.
std::string CleanPath(std::string_view path);
// Go's filepath.Join: joins the non-empty elements with '/' and cleans.
std::string JoinClean(std::initializer_list<std::string_view> elems);

// "unix:///run/containerd/s/<64 hex>" for (containerd address, namespace, group id).
std::string SocketAddress(std::string_view containerd_address, std::string_view ns, std::string_view group_id);

// The filesystem path of a "unix://" address. Addresses without the scheme
// are abstract sockets for containerd, which cask does not create: they are
// an INVALID_ARGUMENT here, as are paths longer than kMaxSocketPath.
Result<std::string> SocketPath(std::string_view address);

}  // namespace cask::shim
