#include "lib/sandbox/pod_shm.h"

#include <algorithm>
#include <charconv>
#include <string>

namespace cask::sandbox {
namespace {

constexpr std::string_view kShm = "/dev/shm";

bool IsShm(const oci::Mount& m) {
  std::string_view d = m.destination;
  while (d.size() > 1 && d.back() == '/') d.remove_suffix(1);
  return d == kShm;
}

bool IsHostBind(const oci::Mount& m) {
  bool bind = m.type == "bind" || std::any_of(m.options.begin(), m.options.end(),
                                              [](const std::string& o) { return o == "bind" || o == "rbind"; });
  return bind && !m.source.empty() && m.source.front() == '/';
}

// "65536k", "64m", "1g", "1048576": bytes, or 0 when malformed.
uint64_t ParseSize(std::string_view v) {
  uint64_t mult = 1;
  if (!v.empty()) {
    switch (v.back()) {
      case 'k': case 'K': mult = 1ull << 10; break;
      case 'm': case 'M': mult = 1ull << 20; break;
      case 'g': case 'G': mult = 1ull << 30; break;
      default: break;
    }
    if (mult != 1) v.remove_suffix(1);
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size()) return 0;
  if (n > kMaxPodShmBytes / mult) return kMaxPodShmBytes;
  return n * mult;
}

}  // namespace

uint64_t PodShmBytes(const oci::Spec& spec) {
  for (const oci::Mount& m : spec.mounts) {
    if (!IsShm(m) || m.type != "tmpfs") continue;
    for (const std::string& o : m.options) {
      if (o.rfind("size=", 0) != 0) continue;
      uint64_t b = ParseSize(std::string_view(o).substr(5));
      if (b == 0) return kDefaultPodShmBytes;
      return std::clamp<uint64_t>(b, 1ull << 20, kMaxPodShmBytes);
    }
    return kDefaultPodShmBytes;
  }
  return kDefaultPodShmBytes;
}

GuestMount PodShmMount(uint64_t bytes) {
  return GuestMount{"shm", std::string(kGuestPodShmDir), "tmpfs",
                    {"nosuid", "nodev", "noexec", "mode=1777", "size=" + std::to_string(bytes)}};
}

bool IsPodShmBind(const oci::Mount& m) { return IsShm(m) && m.source == kGuestPodShmDir; }

oci::Spec UsePodShm(oci::Spec spec) {
  const oci::Mount* last_bind = nullptr;
  for (const oci::Mount& m : spec.mounts)
    if (IsShm(m) && IsHostBind(m)) last_bind = &m;
  if (!last_bind) return spec;
  const bool ro = std::find(last_bind->options.begin(), last_bind->options.end(), "ro") != last_bind->options.end();
  oci::Mount shm{std::string(kShm), "bind", std::string(kGuestPodShmDir),
                 {"rbind", "nosuid", "nodev", "noexec", ro ? "ro" : "rw"}};
  // The first /dev/shm entry's place keeps the order of the mounts below it.
  std::vector<oci::Mount> out;
  bool placed = false;
  for (oci::Mount& m : spec.mounts) {
    if (!IsShm(m)) {
      out.push_back(std::move(m));
    } else if (!placed) {
      out.push_back(shm);
      placed = true;
    }
  }
  spec.mounts = std::move(out);
  return spec;
}

}  // namespace cask::sandbox
