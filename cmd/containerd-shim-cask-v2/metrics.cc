#include "cmd/containerd-shim-cask-v2/metrics.h"

#include <initializer_list>

#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"

namespace cask::shim {
namespace {

namespace v2 = ::io::containerd::cgroups::v2;

uint64_t Get(const std::map<std::string, uint64_t>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

// A counter of a flat-keyed cgroup file and the message field containerd
// reports it in; both have the same name.
template <typename Msg>
struct Counter {
  const char* key;
  void (Msg::*set)(uint64_t);
};
#define CASK_COUNTER(Msg, name) Counter<Msg>{#name, &Msg::set_##name}

// Copies each counter from `from` (a key the guest did not report is 0).
template <typename Msg>
void CopyCounters(const std::map<std::string, uint64_t>& from, Msg* to, std::initializer_list<Counter<Msg>> counters) {
  for (const auto& c : counters) (to->*c.set)(Get(from, c.key));
}

}  // namespace

std::string EncodeMetricsV2(const sys::CgroupStats& s) {
  v2::Metrics m;
  auto* pids = m.mutable_pids();
  pids->set_current(s.pids_current);
  pids->set_limit(s.pids_max);

  using Cpu = v2::CPUStat;
  CopyCounters(s.cpu_stat, m.mutable_cpu(),
               {CASK_COUNTER(Cpu, usage_usec), CASK_COUNTER(Cpu, user_usec), CASK_COUNTER(Cpu, system_usec),
                CASK_COUNTER(Cpu, nr_periods), CASK_COUNTER(Cpu, nr_throttled), CASK_COUNTER(Cpu, throttled_usec)});

  using Mem = v2::MemoryStat;
  auto* mem = m.mutable_memory();
  const auto& ms = s.memory_stat;
  CopyCounters(ms, mem,
               {CASK_COUNTER(Mem, anon), CASK_COUNTER(Mem, file), CASK_COUNTER(Mem, kernel_stack),
                CASK_COUNTER(Mem, slab), CASK_COUNTER(Mem, sock), CASK_COUNTER(Mem, shmem),
                CASK_COUNTER(Mem, file_mapped), CASK_COUNTER(Mem, file_dirty), CASK_COUNTER(Mem, file_writeback),
                CASK_COUNTER(Mem, anon_thp), CASK_COUNTER(Mem, inactive_anon), CASK_COUNTER(Mem, active_anon),
                CASK_COUNTER(Mem, inactive_file), CASK_COUNTER(Mem, active_file), CASK_COUNTER(Mem, unevictable),
                CASK_COUNTER(Mem, slab_reclaimable), CASK_COUNTER(Mem, slab_unreclaimable),
                CASK_COUNTER(Mem, pgfault), CASK_COUNTER(Mem, pgmajfault), CASK_COUNTER(Mem, workingset_nodereclaim),
                CASK_COUNTER(Mem, pgrefill), CASK_COUNTER(Mem, pgscan), CASK_COUNTER(Mem, pgsteal),
                CASK_COUNTER(Mem, pgactivate), CASK_COUNTER(Mem, pgdeactivate), CASK_COUNTER(Mem, pglazyfree),
                CASK_COUNTER(Mem, pglazyfreed), CASK_COUNTER(Mem, thp_fault_alloc),
                CASK_COUNTER(Mem, thp_collapse_alloc)});
  // Kernels since 5.9 split these by anon/file; containerd has one field.
  mem->set_workingset_refault(Get(ms, "workingset_refault_anon") + Get(ms, "workingset_refault_file") +
                              Get(ms, "workingset_refault"));
  mem->set_workingset_activate(Get(ms, "workingset_activate_anon") + Get(ms, "workingset_activate_file") +
                               Get(ms, "workingset_activate"));
  mem->set_usage(s.memory_current);
  // containerd reports "max" as the largest uint64.
  mem->set_usage_limit(s.memory_max ? s.memory_max : UINT64_MAX);
  mem->set_swap_usage(s.memory_swap_current);

  using Events = v2::MemoryEvents;
  CopyCounters(s.memory_events, m.mutable_memory_events(),
               {CASK_COUNTER(Events, low), CASK_COUNTER(Events, high), CASK_COUNTER(Events, max),
                CASK_COUNTER(Events, oom), CASK_COUNTER(Events, oom_kill)});

  auto* io = m.mutable_io();
  for (const auto& e : s.io) {
    auto* u = io->add_usage();
    u->set_major(e.major);
    u->set_minor(e.minor);
    u->set_rbytes(e.rbytes);
    u->set_wbytes(e.wbytes);
    u->set_rios(e.rios);
    u->set_wios(e.wios);
  }
  return m.SerializeAsString();
}

#undef CASK_COUNTER

}  // namespace cask::shim
