// bench/agent_scale: threads and resident memory per live process, on both
// sides of the VM boundary.
//
// Boots one pod VM (real QEMU, the build's guest assets), starts a container,
// then adds processes in steps up to --max (default 300). Every process has
// stdin, stdout and stderr through host pipes, started as an exec of a
// sandbox::Container (its pump on the sandbox's stdio loop, its exit
// delivered by the Container), as the shim's are, and stays blocked
// reading stdin. After each step it prints
// the threads and RSS of this process (the host side: AgentClient, stdio
// loop, Container) and of the guest agent (which reports its own /proc/self/status in
// Check), then the cost per live process between the first and last step.
//
//   agent_scale --guest build/guest --make-rootfs tests/e2e/make-rootfs.sh [--max 300] [--step 100]
//
// Needs root (virtiofsd, mounts). Wall times are not measured: on a shared
// machine under TCG they say little.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/container.h"
#include "lib/sandbox/sandbox.h"
#include "lib/sandbox/shared_dir.h"
#include "tests/e2e/scale_helpers.h"

namespace cask {
namespace {

struct Row {
  int live = 0;
  e2e::ProcUsage host;
  uint32_t agent_threads = 0;
  uint64_t agent_rss = 0;
};

template <typename T>
Status AsStatus(Result<T> r) {
  if (!r.ok()) return std::move(r).error();
  return Ok();
}

int Fail(const std::string& what, const Error& e) {
  std::fprintf(stderr, "agent_scale: %s: %s\n", what.c_str(), e.ToString().c_str());
  return 1;
}

int Run(const std::string& guest, const std::string& make_rootfs, int max, int step) {
  char tmpl[] = "/tmp/cask-bench-scale.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return Fail("mkdtemp", Error::Sys(errno, "mkdtemp"));
  const std::string dir = tmpl, rootfs = dir + "/rootfs";
  SpawnOptions so;
  so.stdout_fd = 2;
  so.stderr_fd = 2;
  auto mk = Spawn({"/bin/bash", make_rootfs, rootfs}, so);
  if (!mk.ok()) return Fail("make-rootfs", mk.error());
  if (auto st = mk->Wait(); !st.ok() || *st != 0) return Fail("make-rootfs", Error::Internal("failed"));

  int rc = 0;
  {
    sandbox::SandboxOptions o;
    o.id = "bench-scale";
    o.config.hypervisor.kernel = guest + "/vmlinux";
    o.config.hypervisor.initrd = guest + "/initrd.img";
    o.config.hypervisor.memory_mib = 512;
    o.config.runtime.state_dir = dir + "/state";
    o.config.agent.connect_timeout_ms = 240'000;
    auto created = sandbox::Sandbox::Create(std::move(o));
    if (!created.ok()) return Fail("sandbox", created.error());
    std::shared_ptr<sandbox::Sandbox> sb = std::move(*created);
    sandbox::AgentClient& agent = sb->agent();

    std::vector<Row> rows;
    std::unique_ptr<sandbox::Container> c1;
    std::vector<e2e::LiveExec> live;
    auto measure = [&]() -> Status {
      CASK_ASSIGN_OR_RETURN(auto info, agent.Check());
      rows.push_back(Row{static_cast<int>(live.size()), e2e::Usage(), info.agent_threads, info.agent_rss_bytes});
      return Ok();
    };
    auto body = [&]() -> Status {
      // The container and its execs through sandbox::Container, as the
      // shim and `cask-runtime run` drive them: its stdio pumps and exit
      // delivery are part of what is measured.
      sandbox::ContainerOptions co;
      co.id = "c1";
      co.spec = oci::DefaultSpec({"sleep", "100000"}, false);
      co.rootfs_dir = rootfs;
      CASK_ASSIGN_OR_RETURN(c1, sandbox::Container::Create(sb, std::move(co)));
      CASK_TRY(AsStatus(c1->Start(*c1->init(), {})));
      CASK_TRY(measure());
      while (static_cast<int>(live.size()) < max) {
        const size_t first = live.size();
        const int target = std::min(max, static_cast<int>(live.size()) + step);
        while (static_cast<int>(live.size()) < target) {
          CASK_ASSIGN_OR_RETURN(auto le, e2e::StartLiveExec(*c1, "e" + std::to_string(live.size()),
                                                            {"sh", "-c", "echo ready; read line"}));
          live.push_back(std::move(le));
        }
        // Measure once every new process is up and its output came through.
        for (size_t i = first; i < live.size(); ++i)
          if (e2e::ReadSome(live[i].stdout_r.get(), 6, std::chrono::seconds(120)) != "ready\n")
            return Error::Internal(live[i].exec_id + " did not say ready");
        CASK_TRY(measure());
      }
      for (auto& le : live) le.stdin_w.Reset();  // EOF: every `read` returns, the shells exit
      for (auto& le : live) {
        if (!le.proc->WaitExitFor(std::chrono::seconds(60)))
          return Error::DeadlineExceeded(le.exec_id + " did not exit");
        CASK_TRY(c1->RemoveExec(le.exec_id, std::chrono::seconds(60)));
      }
      live.clear();
      CASK_TRY(c1->Remove(std::chrono::seconds(60)));
      c1.reset();
      return Ok();
    };
    Status st = body();
    if (!st.ok()) rc = Fail("run", st.error());
    live.clear();
    c1.reset();

    std::printf("%8s %14s %14s %14s %14s\n", "live", "host threads", "host RSS MiB", "agent threads", "agent RSS MiB");
    for (const Row& r : rows)
      std::printf("%8d %14lu %14.1f %14u %14.1f\n", r.live, static_cast<unsigned long>(r.host.threads),
                  r.host.rss_bytes / 1048576.0, r.agent_threads, r.agent_rss / 1048576.0);
    if (rows.size() >= 2 && rows.back().live > rows.front().live) {
      const Row &a = rows.front(), &b = rows.back();
      double n = b.live - a.live;
      std::printf("per live process: host %.2f threads, %.1f KiB RSS; agent %.2f threads, %.1f KiB RSS\n",
                  (double(b.host.threads) - double(a.host.threads)) / n,
                  (double(b.host.rss_bytes) - double(a.host.rss_bytes)) / 1024.0 / n,
                  (double(b.agent_threads) - double(a.agent_threads)) / n,
                  (double(b.agent_rss) - double(a.agent_rss)) / 1024.0 / n);
    }
    if (Status d = sb->Destroy(); !d.ok()) rc = Fail("destroy", d.error());
  }
  if (auto m = sandbox::LiveMountPointsUnder(dir); m.ok() && m->empty()) (void)sandbox::RemoveTreeNoMounts(dir);
  return rc;
}

}  // namespace
}  // namespace cask

int main(int argc, char** argv) {
  std::string guest, make_rootfs;
  int max = 300, step = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--guest") guest = v;
    else if (k == "--make-rootfs") make_rootfs = v;
    else if (k == "--max") max = std::atoi(v.c_str());
    else if (k == "--step") step = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "agent_scale: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (guest.empty() || make_rootfs.empty() || max <= 0 || step <= 0) {
    std::fprintf(stderr, "usage: agent_scale --guest DIR --make-rootfs SCRIPT [--max N] [--step N]\n");
    return 2;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "agent_scale: needs root\n");
    return 77;
  }
  return cask::Run(guest, make_rootfs, max, step);
}
