// CgroupStats: the readings of one cgroup v2 directory, as the guest agent
// takes them (lib/container Cgroup::Stats) and the host receives them over
// the agent API (StatsContainer in proto/agent.proto, field for field).
// One struct for both sides of the VM boundary; on the host every value
// came from the guest and is only reported, never trusted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cask::sys {

struct CgroupStats {
  std::map<std::string, uint64_t> cpu_stat;  // cpu.stat: usage_usec, user_usec, ...
  uint64_t memory_current = 0;
  uint64_t memory_max = 0;  // 0 = max
  uint64_t memory_swap_current = 0;
  std::map<std::string, uint64_t> memory_stat;    // memory.stat, all keys
  std::map<std::string, uint64_t> memory_events;  // memory.events: low, high, max, oom, oom_kill
  uint64_t pids_current = 0;
  uint64_t pids_max = 0;  // 0 = max
  // One line of io.stat: a block device and its byte and operation counts.
  struct Io {
    uint64_t major = 0, minor = 0, rbytes = 0, wbytes = 0, rios = 0, wios = 0;
  };
  std::vector<Io> io;
};

}  // namespace cask::sys
