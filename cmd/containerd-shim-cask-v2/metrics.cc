#include "cmd/containerd-shim-cask-v2/metrics.h"

#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"

namespace cask::shim {
namespace {

uint64_t Get(const std::map<std::string, uint64_t>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

}  // namespace

std::string EncodeMetricsV2(const sys::CgroupStats& s) {
  ::io::containerd::cgroups::v2::Metrics m;
  auto* pids = m.mutable_pids();
  pids->set_current(s.pids_current);
  pids->set_limit(s.pids_max);

  auto* cpu = m.mutable_cpu();
  cpu->set_usage_usec(Get(s.cpu_stat, "usage_usec"));
  cpu->set_user_usec(Get(s.cpu_stat, "user_usec"));
  cpu->set_system_usec(Get(s.cpu_stat, "system_usec"));
  cpu->set_nr_periods(Get(s.cpu_stat, "nr_periods"));
  cpu->set_nr_throttled(Get(s.cpu_stat, "nr_throttled"));
  cpu->set_throttled_usec(Get(s.cpu_stat, "throttled_usec"));

  auto* mem = m.mutable_memory();
  const auto& ms = s.memory_stat;
  mem->set_anon(Get(ms, "anon"));
  mem->set_file(Get(ms, "file"));
  mem->set_kernel_stack(Get(ms, "kernel_stack"));
  mem->set_slab(Get(ms, "slab"));
  mem->set_sock(Get(ms, "sock"));
  mem->set_shmem(Get(ms, "shmem"));
  mem->set_file_mapped(Get(ms, "file_mapped"));
  mem->set_file_dirty(Get(ms, "file_dirty"));
  mem->set_file_writeback(Get(ms, "file_writeback"));
  mem->set_anon_thp(Get(ms, "anon_thp"));
  mem->set_inactive_anon(Get(ms, "inactive_anon"));
  mem->set_active_anon(Get(ms, "active_anon"));
  mem->set_inactive_file(Get(ms, "inactive_file"));
  mem->set_active_file(Get(ms, "active_file"));
  mem->set_unevictable(Get(ms, "unevictable"));
  mem->set_slab_reclaimable(Get(ms, "slab_reclaimable"));
  mem->set_slab_unreclaimable(Get(ms, "slab_unreclaimable"));
  mem->set_pgfault(Get(ms, "pgfault"));
  mem->set_pgmajfault(Get(ms, "pgmajfault"));
  mem->set_workingset_refault(Get(ms, "workingset_refault_anon") + Get(ms, "workingset_refault_file") +
                              Get(ms, "workingset_refault"));
  mem->set_workingset_activate(Get(ms, "workingset_activate_anon") + Get(ms, "workingset_activate_file") +
                               Get(ms, "workingset_activate"));
  mem->set_workingset_nodereclaim(Get(ms, "workingset_nodereclaim"));
  mem->set_pgrefill(Get(ms, "pgrefill"));
  mem->set_pgscan(Get(ms, "pgscan"));
  mem->set_pgsteal(Get(ms, "pgsteal"));
  mem->set_pgactivate(Get(ms, "pgactivate"));
  mem->set_pgdeactivate(Get(ms, "pgdeactivate"));
  mem->set_pglazyfree(Get(ms, "pglazyfree"));
  mem->set_pglazyfreed(Get(ms, "pglazyfreed"));
  mem->set_thp_fault_alloc(Get(ms, "thp_fault_alloc"));
  mem->set_thp_collapse_alloc(Get(ms, "thp_collapse_alloc"));
  mem->set_usage(s.memory_current);
  // containerd reports "max" as the largest uint64.
  mem->set_usage_limit(s.memory_max ? s.memory_max : UINT64_MAX);
  mem->set_swap_usage(s.memory_swap_current);

  auto* ev = m.mutable_memory_events();
  ev->set_low(Get(s.memory_events, "low"));
  ev->set_high(Get(s.memory_events, "high"));
  ev->set_max(Get(s.memory_events, "max"));
  ev->set_oom(Get(s.memory_events, "oom"));
  ev->set_oom_kill(Get(s.memory_events, "oom_kill"));

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

}  // namespace cask::shim
