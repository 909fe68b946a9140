// Capabilities: names to numbers, and applying a process's capability sets.
//
// Parsing (CapabilityFromName, ResolveCapabilities) is pure and runs in the
// agent before any fork. The Apply* functions run in the container child,
// single-threaded, just before execve.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/oci/spec.h"

namespace cask::container {

// "CAP_CHOWN" -> 0 ... "CAP_CHECKPOINT_RESTORE" -> 40. Exact, case-sensitive
// (as runc). nullopt for an unknown name. The table is lib/oci/names.h's.
std::optional<int> CapabilityFromName(std::string_view name);
std::string_view CapabilityName(int cap);  // "" if unknown

// Capability sets as numbers. Each is a bit mask (bit n = capability n).
struct CapabilitySets {
  uint64_t bounding = 0, effective = 0, inheritable = 0, permitted = 0, ambient = 0;
};

// Converts names to numbers. An unknown name is an INVALID_ARGUMENT error.
// Capabilities above `last_cap` (what the running kernel knows, see
// LastCapability) are dropped silently, as runc does.
Result<CapabilitySets> ResolveCapabilities(const oci::Capabilities& caps, int last_cap);

// /proc/sys/kernel/cap_last_cap (falls back to CAP_LAST_CAP of the headers).
int LastCapability();

// Child side. Drops every capability not in `sets.bounding` from the
// bounding set (needs CAP_SETPCAP, i.e. call it while still root).
Status DropBoundingSet(const CapabilitySets& sets, int last_cap);
// Child side, after the uid change (done with PR_SET_KEEPCAPS): sets the
// effective, permitted and inheritable sets, then raises the ambient set.
Status ApplyCapabilities(const CapabilitySets& sets, int last_cap);

}  // namespace cask::container
