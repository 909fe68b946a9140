#include "lib/sandbox/agent_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "lib/oci/parse.h"
#include "lib/sandbox/fake_agent_for_test.h"

namespace cask::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::FakeAgent;
namespace pb = ::cask::agent::v1;

void AnswerCheck(FakeAgent& fake) {
  fake.On<pb::CheckRequest, pb::CheckResponse>("Check", [](const pb::CheckRequest&) -> Result<pb::CheckResponse> {
    pb::CheckResponse r;
    r.set_agent_version("0.1.0-test");
    r.set_kernel_release("6.1.0-guest");
    r.set_uptime_ns(1234);
    return r;
  });
}

TEST(AgentClientTest, CheckReturnsAgentInfo) {
  FakeAgent fake;
  AnswerCheck(fake);
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  auto info = client.Check();
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info->agent_version, "0.1.0-test");
  EXPECT_EQ(info->kernel_release, "6.1.0-guest");
  EXPECT_EQ(info->uptime, std::chrono::nanoseconds(1234));
}

TEST(AgentClientTest, WaitReadySucceedsWhenTheAgentStartsLate) {
  FakeAgent fake;
  AnswerCheck(fake);
  AgentClient::Options opts;
  opts.check_attempt_timeout = 100ms;
  AgentClient client(fake.TakeClientEnd(), opts);
  std::thread late([&] {
    std::this_thread::sleep_for(350ms);
    fake.Serve();
  });
  auto start = std::chrono::steady_clock::now();
  auto info = client.WaitReady(10s);
  late.join();
  ASSERT_TRUE(info.ok()) << info.error().ToString();
  EXPECT_EQ(info->kernel_release, "6.1.0-guest");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
}

TEST(AgentClientTest, WaitReadyTimesOutWhenNobodyAnswers) {
  FakeAgent fake;  // never serves
  AgentClient::Options opts;
  opts.check_attempt_timeout = 100ms;
  AgentClient client(fake.TakeClientEnd(), opts);
  auto start = std::chrono::steady_clock::now();
  auto info = client.WaitReady(500ms);
  auto spent = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), Code::kDeadlineExceeded) << info.error().ToString();
  EXPECT_GE(spent, 450ms);
  EXPECT_LT(spent, 3s);
}

TEST(AgentClientTest, WaitReadyFailsFastWhenTheChannelCloses) {
  FakeAgent fake;
  AgentClient client(fake.TakeClientEnd());
  fake.CloseWithoutServing();
  auto start = std::chrono::steady_clock::now();
  auto info = client.WaitReady(10s);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), Code::kUnavailable) << info.error().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(AgentClientTest, WaitReadyStopsWhenAborted) {
  FakeAgent fake;  // never serves
  AgentClient::Options opts;
  opts.check_attempt_timeout = 50ms;
  AgentClient client(fake.TakeClientEnd(), opts);
  std::atomic<int> polls{0};
  auto info = client.WaitReady(10s, [&] { return ++polls >= 3; });
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), Code::kCancelled) << info.error().ToString();
}

TEST(AgentClientTest, CreateContainerSendsSpecRootfsAndStdin) {
  FakeAgent fake;
  std::mutex mu;
  pb::CreateContainerRequest seen;
  fake.On<pb::CreateContainerRequest, pb::CreateContainerResponse>(
      "CreateContainer", [&](const pb::CreateContainerRequest& r) -> Result<pb::CreateContainerResponse> {
        std::lock_guard<std::mutex> l(mu);
        seen = r;
        pb::CreateContainerResponse resp;
        resp.set_pid(42);
        return resp;
      });
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  oci::Spec spec = oci::DefaultSpec({"sh", "-c", "echo hi"}, false);
  auto pid = client.CreateContainer("c1", spec, "/run/cask/shared/c1/rootfs", true);
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  EXPECT_EQ(*pid, 42u);
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(seen.container_id(), "c1");
  EXPECT_EQ(seen.rootfs_path(), "/run/cask/shared/c1/rootfs");
  EXPECT_TRUE(seen.stdin());
  auto parsed = oci::ParseSpec(seen.oci_spec_json());
  ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
  ASSERT_TRUE(parsed->process.has_value());
  EXPECT_EQ(parsed->process->args, (std::vector<std::string>{"sh", "-c", "echo hi"}));
}

TEST(AgentClientTest, AgentErrorsKeepTheirCodeAndNameTheMethod) {
  FakeAgent fake;
  fake.On<pb::StartContainerRequest, pb::StartContainerResponse>(
      "StartContainer", [](const pb::StartContainerRequest&) -> Result<pb::StartContainerResponse> {
        return Error::NotFound("exec: nosuchcmd: No such file or directory");
      });
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  auto r = client.StartContainer("c1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_EQ(r.error().message(), "exec: nosuchcmd: No such file or directory");
  EXPECT_NE(r.error().ToString().find("StartContainer"), std::string::npos) << r.error().ToString();
}

TEST(AgentClientTest, UnimplementedMethodIsReported) {
  FakeAgent fake;
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  auto r = client.PauseContainer("c1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnimplemented) << r.error().ToString();
}

TEST(AgentClientTest, WaitProcessAndStatsAreConverted) {
  FakeAgent fake;
  fake.On<pb::WaitProcessRequest, pb::WaitProcessResponse>(
      "WaitProcess", [](const pb::WaitProcessRequest& r) -> Result<pb::WaitProcessResponse> {
        if (r.container_id() != "c1" || r.exec_id() != "e1") return Error::NotFound("no such process");
        pb::WaitProcessResponse resp;
        resp.set_exit_status(137);
        resp.set_exited_at_ns(99);
        return resp;
      });
  fake.On<pb::StatsContainerRequest, pb::StatsContainerResponse>(
      "StatsContainer", [](const pb::StatsContainerRequest&) -> Result<pb::StatsContainerResponse> {
        pb::StatsContainerResponse resp;
        (*resp.mutable_cpu_stat())["usage_usec"] = 10;
        resp.set_memory_max(64 << 20);
        resp.set_pids_current(3);
        auto* io = resp.add_io();
        io->set_major(254);
        io->set_rbytes(4096);
        return resp;
      });
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  auto w = client.WaitProcess("c1", "e1");
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  EXPECT_EQ(w->status, 137);
  EXPECT_EQ(w->exited_at_ns, 99u);
  auto s = client.StatsContainer("c1");
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_EQ(s->cpu_stat.at("usage_usec"), 10u);
  EXPECT_EQ(s->memory_max, uint64_t{64} << 20);
  EXPECT_EQ(s->pids_current, 3u);
  ASSERT_EQ(s->io.size(), 1u);
  EXPECT_EQ(s->io[0].major, 254u);
  EXPECT_EQ(s->io[0].rbytes, 4096u);
}

TEST(AgentClientTest, SignalOutOfRangeIsRejectedLocally) {
  FakeAgent fake;
  AgentClient client(fake.TakeClientEnd());
  auto r = client.SignalProcess("c1", "", 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(AgentClientTest, CallsFailUnavailableAfterClose) {
  FakeAgent fake;
  AnswerCheck(fake);
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  ASSERT_TRUE(client.Check().ok());
  client.Close();
  EXPECT_TRUE(client.closed());
  auto r = client.Check();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace cask::sandbox
