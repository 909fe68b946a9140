// End-to-end (issue: threads scale with pods, not processes): 300 live
// processes with stdin, stdout and stderr in one pod VM, each an exec of a
// sandbox::Container with its stdio through host pipes, as the shim runs
// them. While they all live, short calls (StartContainer, SignalProcess)
// still answer promptly; then half of them are killed by a signal and half
// are fed a line on stdin and exit with their own status, and every exit
// and every byte of output arrives (all output before the exit is
// recorded). The thread counts of both sides are checked to stay flat: the
// agent's (it reports it in Check) and this whole host process's (stdio
// loop, exit delivery, agent client: no thread per process).
//
// Needs root and the guest assets (CASK_GUEST_DIR, built by
// `ninja guest-assets`); skips otherwise.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/sandbox.h"
#include "tests/e2e/scale_helpers.h"

namespace cask::sandbox {
namespace {

using namespace std::chrono_literals;
using e2e::LiveExec;

constexpr int kProcesses = 300;

class ManyProcessesTest : public e2e::PodVmTest {
 protected:
  ManyProcessesTest() : PodVmTest({"many-test", "many-host", 512 /* 300 shells */}) {}
  void BeforeDestroy() override {
    live_.clear();
    c1_.reset();
  }
  void StartContainer(const std::string& cid) { PodVmTest::StartContainer(cid, {"sleep", "100000"}); }

  std::unique_ptr<Container> c1_;
  std::vector<LiveExec> live_;
};

TEST_F(ManyProcessesTest, ThreeHundredLiveProcessesWithStdioAllGetSignalsAndExits) {
  AgentClient& agent = sb_->agent();
  ContainerOptions co;
  co.id = "c1";
  co.spec = oci::DefaultSpec({"sleep", "100000"}, false);
  co.rootfs_dir = rootfs_;
  auto c1 = Container::Create(sb_, std::move(co));
  ASSERT_TRUE(c1.ok()) << c1.error().ToString();
  c1_ = std::move(*c1);
  ASSERT_TRUE(c1_->Start(*c1_->init(), {}).ok());
  auto before = agent.Check();
  ASSERT_TRUE(before.ok()) << before.error().ToString();
  const e2e::ProcUsage host_before = e2e::Usage();

  // Each process says it is ready, then blocks reading a line from stdin.
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kProcesses; ++i) {
    std::string code = std::to_string(i % 100);
    auto le = e2e::StartLiveExec(*c1_, "e" + std::to_string(i),
                                 {"sh", "-c", "echo ready; read line; echo \"got $line\"; echo err >&2; exit " + code});
    ASSERT_TRUE(le.ok()) << "process " << i << ": " << le.error().ToString();
    live_.push_back(std::move(*le));
  }
  for (auto& le : live_) ASSERT_EQ(e2e::ReadSome(le.stdout_r.get(), 6, 120s), "ready\n") << le.exec_id;
  auto started_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // All 300 live, each with its stdio pumped: short calls still answer.
  auto t1 = std::chrono::steady_clock::now();
  StartContainer("c2");
  auto start_container = std::chrono::steady_clock::now() - t1;
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(agent.SignalProcess("c1", "e0", SIGCONT).ok());
  auto signal_call = std::chrono::steady_clock::now() - t2;
  EXPECT_LT(start_container, 30s);
  EXPECT_LT(signal_call, 10s);
  auto during = agent.Check();
  ASSERT_TRUE(during.ok()) << during.error().ToString();
  // The agent's threads do not grow with processes (before: one blocked
  // handler per wait, read and write, and a pump thread per stream).
  EXPECT_LE(during->agent_threads, before->agent_threads + 8)
      << "agent threads went from " << before->agent_threads << " to " << during->agent_threads;
  // Neither do the host's: one stdio loop (loop, stdin sender, exit
  // delivery) and the agent client's threads per sandbox, whatever the
  // number of processes (before: an exit watcher thread per process).
  auto host = e2e::Usage();
  EXPECT_LE(host.threads, host_before.threads + 8)
      << "host threads went from " << host_before.threads << " to " << host.threads << " with " << kProcesses
      << " live processes";

  // Even processes: SIGTERM (sh dies, 143). Odd ones: a line on stdin.
  for (int i = 0; i < kProcesses; ++i) {
    LiveExec& le = live_[i];
    if (i % 2 == 0) {
      ASSERT_TRUE(le.proc->Signal(SIGTERM).ok()) << le.exec_id;
    } else {
      ASSERT_TRUE(WriteAll(le.stdin_w.get(), "hello\n").ok());
      le.stdin_w.Reset();
    }
  }
  for (int i = 0; i < kProcesses; ++i) {
    LiveExec& le = live_[i];
    auto exit = le.proc->WaitExitFor(120s);
    ASSERT_TRUE(exit.has_value()) << le.exec_id << " did not exit";
    EXPECT_EQ(exit->status, static_cast<uint32_t>(i % 2 == 0 ? 128 + SIGTERM : i % 100)) << le.exec_id;
    // Recorded only after the output drained: all of it is in the pipes,
    // which are closed (a short timeout suffices: nothing is in flight).
    std::string out = e2e::ReadSome(le.stdout_r.get(), 1 << 20, 10s);
    std::string err = e2e::ReadSome(le.stderr_r.get(), 1 << 20, 10s);
    if (i % 2 == 1) {
      EXPECT_EQ(out, "got hello\n") << le.exec_id;
      EXPECT_EQ(err, "err\n") << le.exec_id;
    } else {
      EXPECT_EQ(out, "") << le.exec_id;
    }
    EXPECT_TRUE(c1_->RemoveExec(le.exec_id, 10s).ok()) << le.exec_id;
  }
  auto after = agent.Check();
  ASSERT_TRUE(after.ok());
  std::printf(
      "[ scale    ] %d processes started and ready in %.1f s; StartContainer %.0f ms, SignalProcess %.0f ms while live\n"
      "[ scale    ] agent threads %u -> %u (live) -> %u; agent RSS %.1f -> %.1f MiB; host threads %lu -> %lu (live), "
      "RSS %.1f -> %.1f MiB\n",
      kProcesses, started_s, std::chrono::duration<double, std::milli>(start_container).count(),
      std::chrono::duration<double, std::milli>(signal_call).count(), before->agent_threads, during->agent_threads,
      after->agent_threads, before->agent_rss_bytes / 1048576.0, during->agent_rss_bytes / 1048576.0,
      static_cast<unsigned long>(host_before.threads), static_cast<unsigned long>(host.threads),
      host_before.rss_bytes / 1048576.0, host.rss_bytes / 1048576.0);
  live_.clear();
  EXPECT_TRUE(c1_->Remove(30s).ok());
  c1_.reset();
  EXPECT_TRUE(agent.RemoveContainer("c2", true).ok());
}

}  // namespace
}  // namespace cask::sandbox
