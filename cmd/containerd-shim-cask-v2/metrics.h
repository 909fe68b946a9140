// The guest cgroup v2 readings of a container as containerd's
// io.containerd.cgroups.v2.Metrics (what `ctr task metrics` and CRI's
// ListContainerStats decode).
#pragma once

#include <string>

#include "lib/sys/cgroup_stats.h"

namespace cask::shim {

inline constexpr char kMetricsV2TypeUrl[] = "io.containerd.cgroups.v2.Metrics";

// Serialized io.containerd.cgroups.v2.Metrics.
std::string EncodeMetricsV2(const sys::CgroupStats& s);

}  // namespace cask::shim
