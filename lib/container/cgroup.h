// cgroup v2: one container's cgroup directory, its limits and readings.
//
// Cgroup owns nothing by itself (a value naming a directory); Container
// decides when the directory is created and removed. Conversions from the
// OCI (cgroup v1 flavoured) resource model are pure functions, tested alone.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "lib/base/result.h"
#include "lib/container/container.h"
#include "lib/oci/spec.h"

namespace cask::container {

// cpu.shares (2..262144) -> cpu.weight (1..10000), as runc and crun.
uint64_t CpuSharesToWeight(uint64_t shares);
// blkio weight (10..1000) -> io.weight (1..10000), as runc.
uint64_t BlkioWeightToIoWeight(uint64_t weight);
// OCI memory.swap is memory+swap; cgroup v2 memory.swap.max is swap only.
// Returns the memory.swap.max value: -1 = "max", nullopt = leave unset.
Result<std::optional<int64_t>> SwapToCgroupV2(int64_t swap, std::optional<int64_t> memory);

// A cgroup file write: "<file>" gets "<value>".
struct CgroupWrite {
  std::string file;
  std::string value;
  // Skipped when the file does not exist: memory.swap.max (a guest kernel
  // or VM without swap cannot use swap anyway) and hugetlb.<size>.max (page
  // sizes of the host that the guest does not support cannot be used).
  bool optional = false;
};
// The file writes that apply `r` (pure; validates the unified keys and
// rejects what cgroup v2 cannot do, e.g. realtime cpu).
Result<std::vector<CgroupWrite>> ResourceWrites(const oci::LinuxResources& r);

// Parsers of cgroup files.
std::map<std::string, uint64_t> ParseFlatKeyed(const std::string& text);  // "key value\n"
uint64_t ParseMaxValue(const std::string& text);                         // "max" -> 0
std::vector<sys::CgroupStats::Io> ParseIoStat(const std::string& text);

class Cgroup {
 public:
  Cgroup() = default;
  explicit Cgroup(std::string path) : path_(std::move(path)) {}

  // Makes <root>/<id>, after enabling the controllers it needs in every
  // cgroup2 ancestor's cgroup.subtree_control (those that are available).
  // ALREADY_EXISTS if the directory exists.
  static Result<Cgroup> Create(const std::string& root, const std::string& id);

  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const;

  Status Apply(const oci::LinuxResources& r) const;
  Status AddProcess(pid_t pid) const;  // writes cgroup.procs
  Result<std::vector<pid_t>> Procs() const;
  Status Freeze(bool frozen, std::chrono::milliseconds timeout) const;
  Status Kill(int sig) const;  // cgroup.kill for SIGKILL, else each pid
  Result<sys::CgroupStats> Stats() const;
  // Kills everything, waits up to `timeout` for cgroup.procs to be empty,
  // removes the directory. Nothing to do if the directory is gone.
  Status Remove(std::chrono::milliseconds timeout) const;

 private:
  std::string path_;
};

}  // namespace cask::container
