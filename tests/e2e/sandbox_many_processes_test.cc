// End-to-end (issue: the agent's threads scale with pods, not processes):
// 300 live processes with stdin, stdout and stderr in one pod VM, each
// pumped through host pipes as the shim does. While they all live, short
// calls (StartContainer, SignalProcess) still answer promptly; then half of
// them are killed by a signal and half are fed a line on stdin and exit with
// their own status, and every exit and every byte of output arrives. The
// agent's thread count is checked to stay flat (it reports it in Check).
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
using e2e::LiveProcess;

constexpr int kProcesses = 300;

class ManyProcessesTest : public e2e::PodVmTest {
 protected:
  ManyProcessesTest() : PodVmTest({"many-test", "many-host", 512 /* 300 shells */}) {}
  void BeforeDestroy() override { live_.clear(); }
  void StartContainer(const std::string& cid) { PodVmTest::StartContainer(cid, {"sleep", "100000"}); }

  std::vector<LiveProcess> live_;
};

TEST_F(ManyProcessesTest, ThreeHundredLiveProcessesWithStdioAllGetSignalsAndExits) {
  AgentClient& agent = sb_->agent();
  StartContainer("c1");
  auto before = agent.Check();
  ASSERT_TRUE(before.ok()) << before.error().ToString();

  // Each process says it is ready, then blocks reading a line from stdin.
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kProcesses; ++i) {
    std::string code = std::to_string(i % 100);
    auto lp = e2e::StartLive(*sb_, "c1", "e" + std::to_string(i),
                             {"sh", "-c", "echo ready; read line; echo \"got $line\"; echo err >&2; exit " + code});
    ASSERT_TRUE(lp.ok()) << "process " << i << ": " << lp.error().ToString();
    live_.push_back(std::move(*lp));
  }
  for (auto& lp : live_) ASSERT_EQ(e2e::ReadSome(lp.stdout_r.get(), 6, 120s), "ready\n") << lp.exec_id;
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
  auto host = e2e::Usage();

  // Even processes: SIGTERM (sh dies, 143). Odd ones: a line on stdin.
  for (int i = 0; i < kProcesses; ++i) {
    LiveProcess& lp = live_[i];
    if (i % 2 == 0) {
      ASSERT_TRUE(agent.SignalProcess("c1", lp.exec_id, SIGTERM).ok()) << lp.exec_id;
    } else {
      ASSERT_TRUE(WriteAll(lp.stdin_w.get(), "hello\n").ok());
      lp.stdin_w.Reset();
    }
  }
  for (int i = 0; i < kProcesses; ++i) {
    LiveProcess& lp = live_[i];
    auto exit = agent.WaitProcess("c1", lp.exec_id);
    ASSERT_TRUE(exit.ok()) << lp.exec_id << ": " << exit.error().ToString();
    EXPECT_EQ(exit->status, i % 2 == 0 ? 128 + SIGTERM : i % 100) << lp.exec_id;
    ASSERT_TRUE(lp.pump->WaitDrainedFor(120s)) << lp.exec_id;
    EXPECT_TRUE(lp.pump->status().ok()) << lp.pump->status().error().ToString();
    std::string out = e2e::ReadSome(lp.stdout_r.get(), 1 << 20, 10s);
    std::string err = e2e::ReadSome(lp.stderr_r.get(), 1 << 20, 10s);
    if (i % 2 == 1) {
      EXPECT_EQ(out, "got hello\n") << lp.exec_id;
      EXPECT_EQ(err, "err\n") << lp.exec_id;
    } else {
      EXPECT_EQ(out, "") << lp.exec_id;
    }
    lp.pump.reset();
    EXPECT_TRUE(agent.RemoveProcess("c1", lp.exec_id).ok()) << lp.exec_id;
  }
  auto after = agent.Check();
  ASSERT_TRUE(after.ok());
  std::printf(
      "[ scale    ] %d processes started and ready in %.1f s; StartContainer %.0f ms, SignalProcess %.0f ms while live\n"
      "[ scale    ] agent threads %u -> %u (live) -> %u; agent RSS %.1f -> %.1f MiB; host client threads %lu, RSS "
      "%.1f MiB\n",
      kProcesses, started_s, std::chrono::duration<double, std::milli>(start_container).count(),
      std::chrono::duration<double, std::milli>(signal_call).count(), before->agent_threads, during->agent_threads,
      after->agent_threads, before->agent_rss_bytes / 1048576.0, during->agent_rss_bytes / 1048576.0,
      static_cast<unsigned long>(host.threads), host.rss_bytes / 1048576.0);
  EXPECT_TRUE(agent.RemoveContainer("c1", true).ok());
  EXPECT_TRUE(agent.RemoveContainer("c2", true).ok());
}

}  // namespace
}  // namespace cask::sandbox
