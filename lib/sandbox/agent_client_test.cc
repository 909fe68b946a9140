#include "lib/sandbox/agent_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>
#include <thread>

#include "lib/oci/parse.h"
#include "lib/sandbox/fake_agent_for_test.h"

namespace cask::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::AddExit;
using testing::AddOutput;
using testing::EventFeed;
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


// --- the event stream ---

void AnswerCreateAndExec(FakeAgent& fake) {
  fake.On<pb::CreateContainerRequest, pb::CreateContainerResponse>(
      "CreateContainer", [](const pb::CreateContainerRequest&) -> Result<pb::CreateContainerResponse> {
        pb::CreateContainerResponse r;
        r.set_pid(10);
        return r;
      });
  fake.On<pb::ExecProcessRequest, pb::ExecProcessResponse>(
      "ExecProcess", [](const pb::ExecProcessRequest& req) -> Result<pb::ExecProcessResponse> {
        if (req.exec_id() == "bad") return Error::InvalidArgument("bad process");
        pb::ExecProcessResponse r;
        r.set_pid(11);
        return r;
      });
}

struct EventFixture {
  explicit EventFixture(AgentClient::Options opts = {}) {
    feed.Attach(fake);
    AnswerCreateAndExec(fake);
    client = std::make_unique<AgentClient>(fake.TakeClientEnd(), opts);
    fake.Serve();
    EXPECT_TRUE(client->CreateContainer("c1", oci::DefaultSpec({"true"}, false), "/r", false).ok());
  }
  ~EventFixture() {
    feed.Stop();
    client.reset();
    fake.Stop();
  }
  EventFeed feed;  // declared first: outlives the fake's handlers
  FakeAgent fake;
  std::unique_ptr<AgentClient> client;
};

TEST(AgentClientEventsTest, ExitsAndOutputArriveThroughTheStream) {
  EventFixture f;
  pb::GetEventsResponse b;
  AddOutput(b, "c1", "", pb::STDOUT, "hello ", false);
  AddOutput(b, "c1", "", pb::STDERR, "", true);
  f.feed.Push(b);
  pb::GetEventsResponse b2;
  AddOutput(b2, "c1", "", pb::STDOUT, "world", true);
  AddExit(b2, "c1", "", 3);
  f.feed.Push(b2);
  auto w = f.client->WaitProcess("c1", "");
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  EXPECT_EQ(w->status, 3);
  EXPECT_EQ(w->exited_at_ns, 42u);
  std::string out;
  for (;;) {
    auto c = f.client->ReadStdout("c1", "", 4);
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    EXPECT_LE(c->data.size(), 4u);
    out += c->data;
    if (c->eof) break;
    EXPECT_FALSE(c->data.empty());
  }
  EXPECT_EQ(out, "hello world");
  auto e = f.client->ReadStderr("c1", "", 0);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->eof);
  EXPECT_TRUE(f.client->using_event_stream());
  // A second waiter gets the same exit; a process never created is unknown.
  EXPECT_EQ(f.client->WaitProcess("c1", "")->status, 3);
  auto unknown = f.client->WaitProcess("c1", "nope");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), Code::kNotFound);
}

TEST(AgentClientEventsTest, AnExitThatArrivesBeforeExecReturnsIsKept) {
  EventFixture f;
  // The exit of e1 comes while ExecProcess is still in flight: the process
  // is tracked from before the call.
  pb::GetEventsResponse b;
  AddExit(b, "c1", "e1", 0);
  f.feed.Push(b);
  ASSERT_TRUE(f.feed.WaitAck(1));
  ASSERT_TRUE(f.client->ExecProcess("c1", "e1", oci::DefaultSpec({"true"}, false).process.value(), false).ok());
  auto w = f.client->WaitProcess("c1", "e1");
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  EXPECT_EQ(w->status, 0);
  // A refused exec is forgotten.
  EXPECT_FALSE(f.client->ExecProcess("c1", "bad", oci::DefaultSpec({"true"}, false).process.value(), false).ok());
  EXPECT_EQ(f.client->WaitProcess("c1", "bad").error().code(), Code::kNotFound);
}

TEST(AgentClientEventsTest, DuplicateBatchesAreIgnored) {
  EventFixture f;
  pb::GetEventsResponse b;
  b.set_seq(1);
  AddOutput(b, "c1", "", pb::STDOUT, "once", false);
  f.feed.Push(b);
  f.feed.Push(b);  // the agent resent it: the client already has it
  pb::GetEventsResponse b2;
  b2.set_seq(2);
  AddOutput(b2, "c1", "", pb::STDOUT, "", true);
  f.feed.Push(b2);
  std::string out;
  for (;;) {
    auto c = f.client->ReadStdout("c1", "", 0);
    ASSERT_TRUE(c.ok());
    out += c->data;
    if (c->eof) break;
  }
  EXPECT_EQ(out, "once");
  EXPECT_EQ(f.client->event_stats().batches, 2u);
}

TEST(AgentClientEventsTest, ConsumedOutputIsGrantedBackInLargeSteps) {
  EventFixture f;
  // 64 KiB in 1 KiB chunks, as a process writing small lines would send.
  for (int i = 0; i < 64; ++i) {
    pb::GetEventsResponse b;
    AddOutput(b, "c1", "", pb::STDOUT, std::string(1024, 'x'), false);
    f.feed.Push(b);
  }
  size_t got = 0;
  while (got < 64 * 1024) {
    auto c = f.client->ReadStdout("c1", "", 0);
    ASSERT_TRUE(c.ok());
    got += c->data.size();
  }
  auto grants = f.feed.grants();
  ASSERT_FALSE(grants.empty());
  size_t granted = 0;
  for (const auto& g : grants) {
    EXPECT_EQ(g.container_id(), "c1");
    EXPECT_EQ(g.stream(), pb::STDOUT);
    EXPECT_GE(g.bytes(), kInitialOutputCredit / 2);  // never one grant per chunk
    granted += g.bytes();
  }
  EXPECT_LE(grants.size(), 3u);
  EXPECT_GE(granted, 32u * 1024);
}

TEST(AgentClientEventsTest, HostileEventsStayBounded) {
  AgentClient::Options opts;
  opts.max_unclaimed_exits = 8;
  opts.max_queued_oom = 4;
  EventFixture f(opts);
  const std::string huge(1 << 20, 'A');
  pb::GetEventsResponse b;
  // Oversized ids: dropped whole.
  AddExit(b, huge, "", 1);
  AddOutput(b, "c1", huge, pb::STDOUT, "x", false);
  b.add_oom_container_ids(huge);
  // Output beyond the credit: only the credit is kept.
  AddOutput(b, "c1", "", pb::STDOUT, std::string(200 * 1024, 'o'), false);
  // Output for a process nobody created: dropped.
  AddOutput(b, "c9", "e9", pb::STDOUT, "zzz", false);
  f.feed.Push(b);
  // A flood: 2000 exits of unknown processes, 100 distinct OOM ids twice.
  for (int round = 0; round < 20; ++round) {
    pb::GetEventsResponse fl;
    for (int i = 0; i < 100; ++i) AddExit(fl, "ghost", std::to_string(round * 100 + i), 9);
    for (int i = 0; i < 100; ++i) fl.add_oom_container_ids("c" + std::to_string(i % 50));
    f.feed.Push(fl);
  }
  ASSERT_TRUE(f.feed.WaitAck(21));
  auto st = f.client->event_stats();
  EXPECT_EQ(st.batches, 21u);
  EXPECT_EQ(st.output_bytes, kInitialOutputCredit);
  EXPECT_EQ(st.dropped_output_bytes, 200u * 1024 - kInitialOutputCredit + 3);
  EXPECT_GE(st.dropped_events, 2000u - 8 + 3);
  // What is kept is bounded: at most max_queued_oom OOM ids, each short.
  // Closed once the first id came (so at least one is seen however slow the
  // machine), then after a pause that lets the queue drain.
  std::atomic<int> ooms{0};
  std::thread closer([&] {
    while (ooms.load() == 0 && !f.client->closed()) std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(300ms);
    f.client->Close();
  });
  for (;;) {
    auto id = f.client->GetOOMEvent();
    if (!id.ok()) {
      EXPECT_EQ(id.error().code(), Code::kUnavailable);
      break;
    }
    EXPECT_LE(id->size(), kMaxGuestIdLength);
    ++ooms;
  }
  closer.join();
  EXPECT_LE(ooms.load(), 4);
  EXPECT_GE(ooms.load(), 1);
  // Of the ghosts only the last few exits are remembered.
  EXPECT_EQ(f.client->WaitProcess("ghost", "1999")->status, 9);
  EXPECT_FALSE(f.client->WaitProcess("ghost", "0").ok());
}

TEST(AgentClientEventsTest, PollErrorsBackOffInsteadOfSpinning) {
  FakeAgent fake;
  std::atomic<int> polls{0};
  fake.On<pb::GetEventsRequest, pb::GetEventsResponse>(
      "GetEvents", [&](const pb::GetEventsRequest&) -> Result<pb::GetEventsResponse> {
        ++polls;
        return Error::Internal(std::string(1 << 20, 'E'));  // and a huge message
      },
      rpc::Lane::kLong);
  AnswerCreateAndExec(fake);
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  ASSERT_TRUE(client.CreateContainer("c1", oci::DefaultSpec({"true"}, false), "/r", false).ok());
  std::this_thread::sleep_for(1s);
  EXPECT_LE(polls.load(), 15);  // a loaded machine only makes fewer
  // The poller retries: wait for its second poll itself (a hang guard only).
  for (int i = 0; i < 3000 && polls.load() < 2; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_GE(polls.load(), 2);
  client.Close();
}

TEST(AgentClientEventsTest, CloseWakesEveryWaiterWithUnavailable) {
  EventFixture f;
  ASSERT_TRUE(f.client->ExecProcess("c1", "e1", oci::DefaultSpec({"true"}, false).process.value(), false).ok());
  std::vector<std::thread> waiters;
  std::atomic<int> unavailable{0};
  waiters.emplace_back([&] {
    auto r = f.client->WaitProcess("c1", "e1");
    if (!r.ok() && r.error().code() == Code::kUnavailable) ++unavailable;
  });
  waiters.emplace_back([&] {
    auto r = f.client->ReadStdout("c1", "e1", 0);
    if (!r.ok() && r.error().code() == Code::kUnavailable) ++unavailable;
  });
  waiters.emplace_back([&] {
    auto r = f.client->GetOOMEvent();
    if (!r.ok() && r.error().code() == Code::kUnavailable) ++unavailable;
  });
  std::this_thread::sleep_for(200ms);
  f.client->Close();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(unavailable.load(), 3);
}

TEST(AgentClientEventsTest, AnAgentWithoutTheStreamGetsTheLegacyCalls) {
  FakeAgent fake;
  AnswerCreateAndExec(fake);
  fake.On<pb::ReadStreamRequest, pb::ReadStreamResponse>(
      "ReadStdout", [](const pb::ReadStreamRequest&) -> Result<pb::ReadStreamResponse> {
        pb::ReadStreamResponse r;
        r.set_data("legacy");
        r.set_eof(true);
        return r;
      });
  AgentClient client(fake.TakeClientEnd());
  fake.Serve();
  ASSERT_TRUE(client.CreateContainer("c1", oci::DefaultSpec({"true"}, false), "/r", false).ok());
  auto c = client.ReadStdout("c1", "", 0);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->data, "legacy");
  EXPECT_TRUE(c->eof);
  EXPECT_FALSE(client.using_event_stream());
}

TEST(AgentClientEventsTest, RemovedProcessesReadAsEofAndAreForgotten) {
  EventFixture f;
  f.fake.On<pb::RemoveContainerRequest, pb::Empty>(
      "RemoveContainer", [](const pb::RemoveContainerRequest&) -> Result<pb::Empty> { return pb::Empty(); });
  // (registered after Serve: the fake's server accepts late registrations)
  pb::GetEventsResponse b;
  AddExit(b, "c1", "", 0);
  f.feed.Push(b);
  ASSERT_TRUE(f.client->WaitProcess("c1", "").ok());
  ASSERT_TRUE(f.client->RemoveContainer("c1", false).ok());
  auto c = f.client->ReadStdout("c1", "", 0);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->eof);
  EXPECT_EQ(f.client->WaitProcess("c1", "").error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace cask::sandbox
