// libFuzzer target for the mountinfo parser (lib/sys/mountinfo.h). The host
// reads its own /proc/self/mountinfo, which a guest influences through the
// names of the mounts it causes (virtio-fs share paths), and the agent reads
// the guest's.
//
// Checks, besides "no crash, no leak, no UB":
//  - every entry has an absolute mount point, and the parse is stable: the
//    entries re-rendered (escaped) parse back to the same entries;
//  - MountPointsUnder("/") returns every mount point, deepest first.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lib/sys/mountinfo.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      char buf[5];
      unsigned char u = static_cast<unsigned char>(c);
      buf[0] = '\\';
      buf[1] = static_cast<char>('0' + ((u >> 6) & 7));
      buf[2] = static_cast<char>('0' + ((u >> 3) & 7));
      buf[3] = static_cast<char>('0' + (u & 7));
      buf[4] = 0;
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

size_t Depth(const std::string& p) {
  size_t n = 0;
  for (char c : p) n += c == '/';
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto mounts = cask::sys::ParseMountInfo(text);
  std::string rendered;
  for (const auto& m : mounts) {
    Check(!m.mount_point.empty() && m.mount_point.front() == '/');
    if (m.options.find_first_of(" \n") != std::string::npos || m.fstype.find_first_of(" \n") != std::string::npos ||
        m.fstype.empty())
      std::abort();
    rendered += std::to_string(m.id) + " " + std::to_string(m.parent_id) + " 0:0 " + Escape(m.root) + " " +
                Escape(m.mount_point) + " " + m.options + " - " + m.fstype + " " + Escape(m.source) + " rw\n";
  }
  auto again = cask::sys::ParseMountInfo(rendered);
  Check(again.size() == mounts.size());
  for (size_t i = 0; i < mounts.size(); ++i) {
    Check(again[i].id == mounts[i].id && again[i].parent_id == mounts[i].parent_id &&
          again[i].root == mounts[i].root && again[i].mount_point == mounts[i].mount_point &&
          again[i].options == mounts[i].options && again[i].fstype == mounts[i].fstype &&
          again[i].source == mounts[i].source);
  }
  auto all = cask::sys::MountPointsUnder(mounts, "/");
  Check(all.size() == mounts.size());
  for (size_t i = 1; i < all.size(); ++i) Check(Depth(all[i - 1]) >= Depth(all[i]));
  return 0;
}
