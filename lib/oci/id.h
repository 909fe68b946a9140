// The one rule for the ids cask accepts: sandbox, container, task and exec
// ids, on the host and in the guest. Ids become path components (state
// directories, cgroup names, socket paths) and log fields, so the rule is
// strict: [A-Za-z0-9][A-Za-z0-9_.-]*, at most kMaxIdLength characters.
// That admits what containerd and Kubernetes generate (64 hex digits) and
// refuses ".", "..", "/", NUL, spaces and control characters.
#pragma once

#include <cstddef>
#include <string_view>

#include "lib/base/result.h"

namespace cask::oci {

inline constexpr size_t kMaxIdLength = 64;

// Ok, or INVALID_ARGUMENT naming `what` ("container id", "--id"...) and
// saying which part of the rule `id` breaks. The message quotes at most
// kMaxIdLength bytes of `id`, with bytes outside the rule's set escaped.
Status ValidateId(std::string_view what, std::string_view id);

}  // namespace cask::oci
