#include "lib/shim/address.h"

#include <vector>

#include "lib/shim/sha256.h"

namespace cask::shim {

std::string CleanPath(std::string_view path) {
  if (path.empty()) return ".";
  bool rooted = path[0] == '/';
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    i = j + 1;
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (!parts.empty() && parts.back() != "..") parts.pop_back();
      else if (!rooted) parts.push_back(seg);
      continue;
    }
    parts.push_back(seg);
  }
  std::string out = rooted ? "/" : "";
  for (size_t k = 0; k < parts.size(); ++k) {
    if (k) out += '/';
    out += parts[k];
  }
  if (out.empty()) return ".";
  return out;
}

std::string JoinClean(std::initializer_list<std::string_view> elems) {
  std::string joined;
  bool any = false;
  for (auto e : elems) {
    if (e.empty()) continue;
    if (any) joined += '/';
    joined += e;
    any = true;
  }
  if (!any) return "";
  return CleanPath(joined);
}

std::string SocketAddress(std::string_view containerd_address, std::string_view ns, std::string_view group_id) {
  std::string path = std::string(kSocketDir) + "/" + Sha256Hex(JoinClean({containerd_address, ns, group_id}));
  return std::string(kUnixScheme) + path;
}

Result<std::string> SocketPath(std::string_view address) {
  if (address.substr(0, kUnixScheme.size()) != kUnixScheme)
    return Error::InvalidArgument("socket address \"" + std::string(address) + "\" does not start with unix://");
  std::string path(address.substr(kUnixScheme.size()));
  if (path.empty() || path[0] != '/')
    return Error::InvalidArgument("socket address \"" + std::string(address) + "\" is not an absolute path");
  if (path.size() > kMaxSocketPath)
    return Error::InvalidArgument("socket path " + path + " is longer than " + std::to_string(kMaxSocketPath) +
                                  " bytes");
  return path;
}

}  // namespace cask::shim
