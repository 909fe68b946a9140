#include "lib/container/capabilities.h"

#include <linux/capability.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstdlib>
#include <span>

#include "lib/base/fs.h"
#include "lib/oci/names.h"

namespace cask::container {
namespace {

Result<uint64_t> ResolveSet(const std::vector<std::string>& names, int last_cap,
                            const char* set_name) {
  uint64_t mask = 0;
  for (const auto& n : names) {
    std::optional<int> cap = CapabilityFromName(n);
    if (!cap) {
      return Error::InvalidArgument("unknown capability \"" + n + "\" in " + set_name + " set");
    }
    if (*cap > last_cap) continue;
    mask |= uint64_t{1} << *cap;
  }
  return mask;
}

}  // namespace

std::optional<int> CapabilityFromName(std::string_view name) {
  return oci::CapabilityNumber(name);
}

std::string_view CapabilityName(int cap) {
  std::span<const std::string_view> names = oci::CapabilityNames();
  if (cap < 0 || static_cast<size_t>(cap) >= names.size()) return {};
  return names[static_cast<size_t>(cap)];
}

int LastCapability() {
  auto text = ReadFile("/proc/sys/kernel/cap_last_cap");
  if (text.ok()) {
    char* end = nullptr;
    long v = std::strtol(text->c_str(), &end, 10);
    if (end != text->c_str() && v > 0 && v < 64) return static_cast<int>(v);
  }
  return CAP_LAST_CAP;
}

Result<CapabilitySets> ResolveCapabilities(const oci::Capabilities& caps, int last_cap) {
  CapabilitySets s;
  CASK_ASSIGN_OR_RETURN(s.bounding, ResolveSet(caps.bounding, last_cap, "bounding"));
  CASK_ASSIGN_OR_RETURN(s.effective, ResolveSet(caps.effective, last_cap, "effective"));
  CASK_ASSIGN_OR_RETURN(s.inheritable, ResolveSet(caps.inheritable, last_cap, "inheritable"));
  CASK_ASSIGN_OR_RETURN(s.permitted, ResolveSet(caps.permitted, last_cap, "permitted"));
  CASK_ASSIGN_OR_RETURN(s.ambient, ResolveSet(caps.ambient, last_cap, "ambient"));
  return s;
}

Status DropBoundingSet(const CapabilitySets& sets, int last_cap) {
  for (int c = 0; c <= last_cap; ++c) {
    if (sets.bounding & (uint64_t{1} << c)) continue;
    if (cap_drop_bound(static_cast<cap_value_t>(c)) != 0 && errno != EINVAL) {
      return Error::Sys(errno, "drop capability " + std::string(CapabilityName(c)) +
                                   " from the bounding set");
    }
  }
  return Ok();
}

Status ApplyCapabilities(const CapabilitySets& sets, int last_cap) {
  cap_t c = cap_init();
  if (c == nullptr) return Error::Sys(errno, "cap_init");
  struct Set {
    uint64_t mask;
    cap_flag_t flag;
  };
  const Set flags[] = {{sets.effective, CAP_EFFECTIVE},
                       {sets.permitted, CAP_PERMITTED},
                       {sets.inheritable, CAP_INHERITABLE}};
  for (const Set& s : flags) {
    for (int n = 0; n <= last_cap; ++n) {
      if (!(s.mask & (uint64_t{1} << n))) continue;
      cap_value_t v = n;
      if (cap_set_flag(c, s.flag, 1, &v, CAP_SET) != 0) {
        int err = errno;
        cap_free(c);
        return Error::Sys(err, "cap_set_flag " + std::string(CapabilityName(n)));
      }
    }
  }
  if (cap_set_proc(c) != 0) {
    int err = errno;
    cap_free(c);
    return Error::Sys(err, "set capabilities (capset)");
  }
  cap_free(c);
  // The ambient set can only hold what is both permitted and inheritable.
  if (cap_reset_ambient() != 0 && errno != EINVAL) {
    return Error::Sys(errno, "clear the ambient capability set");
  }
  for (int n = 0; n <= last_cap; ++n) {
    uint64_t bit = uint64_t{1} << n;
    if (!(sets.ambient & bit)) continue;
    // runc only warns when an ambient capability cannot be raised; skip the
    // ones the kernel would refuse anyway (not permitted and inheritable).
    if (!(sets.permitted & sets.inheritable & bit)) continue;
    if (cap_set_ambient(n, CAP_SET) != 0) {
      return Error::Sys(errno, "raise ambient capability " + std::string(CapabilityName(n)));
    }
  }
  return Ok();
}

}  // namespace cask::container
