// The agent service over a real ttrpc connection (socketpair), in-process.
#include "cmd/cask-agent/service.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include <dirent.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "lib/base/fs.h"
#include "lib/oci/parse.h"
#include "lib/rpc/client.h"
#include "proto/agent.pb.h"

namespace cask::agent {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, nullptr), 0);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    ASSERT_TRUE(reaper_.Start().ok());
    ASSERT_TRUE(oom_.Start().ok());
    agent_ = std::make_unique<Agent>(Options(), &reaper_, &oom_, Logger());
    server_ = std::make_unique<rpc::Server>();
    RegisterAgentService(*server_, *agent_, Logger());
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    serve_thread_ = std::thread([this, fd = sv[0]] { (void)server_->ServeConnection(UniqueFd(fd)); });
    client_ = std::make_unique<rpc::Client>(UniqueFd(sv[1]));
  }
  void TearDown() override {
    if (!agent_) return;
    client_.reset();
    agent_->CancelBlockingCalls();
    server_->Shutdown();
    if (serve_thread_.joinable()) serve_thread_.join();
    server_.reset();
    agent_.reset();
  }

  virtual AgentOptions Options() {
    AgentOptions opts;
    opts.set_clock = [this](const struct timespec& ts) {
      clock_set_ns_ = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
      return Ok();
    };
    opts.power_off = [this] { powered_off_ = true; };
    opts.power_off_delay = std::chrono::milliseconds(10);
    return opts;
  }

  template <typename Resp, typename Req>
  Result<Resp> Call(const char* method, const Req& req) {
    return client_->CallTyped<Resp>(kAgentService, method, req, std::chrono::seconds(10));
  }

  Reaper reaper_;
  OomWatcher oom_;
  std::atomic<bool> powered_off_{false};
  std::atomic<int64_t> clock_set_ns_{0};
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<rpc::Server> server_;
  std::thread serve_thread_;
  std::unique_ptr<rpc::Client> client_;
};

// The hand-serialized reply parses as the message protobuf builds from the
// same batch: data of every size (empty, one byte, a large block), EOFs,
// exits and OOM ids.
TEST(SerializeEvents, ParsesAsTheProtobufMessage) {
  EventBatch b;
  b.seq = 300;  // a two-byte varint
  auto block = [](std::string s) { return ByteBlock(std::string_view(s)); };
  b.output.push_back(OutputEvent{"c1", "", StreamKind::kStdout, block("x"), false});
  b.output.push_back(OutputEvent{"c1", "e1", StreamKind::kStderr, block(std::string(200'000, 'q')), false});
  b.output.push_back(OutputEvent{"c1", "e1", StreamKind::kStderr, ByteBlock(), true});
  b.output.push_back(OutputEvent{"c2", "e2", StreamKind::kStdout, block(std::string(127, 'z')), true});
  b.exits.push_back(ExitReport{"c1", "e1", ProcessExit{3, 123456789}});
  b.oom_container_ids = {"c2"};
  v1::GetEventsResponse got;
  ASSERT_TRUE(got.ParseFromString(SerializeEvents(b)));
  v1::GetEventsResponse want;
  want.set_seq(300);
  for (const auto& o : b.output) {
    auto* c = want.add_output();
    c->set_container_id(o.container_id);
    c->set_exec_id(o.exec_id);
    c->set_stream(o.stream == StreamKind::kStdout ? v1::STDOUT : v1::STDERR);
    c->set_data(std::string(o.data.view()));
    c->set_eof(o.eof);
  }
  auto* x = want.add_exits();
  x->set_container_id("c1");
  x->set_exec_id("e1");
  x->set_exit_status(3);
  x->set_exited_at_ns(123456789);
  want.add_oom_container_ids("c2");
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString());
  EXPECT_EQ(got.output(1).data().size(), 200'000u);
  // An empty batch is an empty message but for its seq.
  v1::GetEventsResponse empty;
  ASSERT_TRUE(empty.ParseFromString(SerializeEvents(EventBatch{})));
  EXPECT_EQ(empty.seq(), 0u);
  EXPECT_EQ(empty.output_size(), 0);
}

TEST_F(ServiceTest, Check) {
  auto r = Call<v1::CheckResponse>("Check", v1::CheckRequest());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(r->agent_version().empty());
  EXPECT_FALSE(r->kernel_release().empty());
  EXPECT_GT(r->uptime_ns(), 0u);
}

TEST_F(ServiceTest, UnknownContainerIsNotFound) {
  v1::StartContainerRequest start;
  start.set_container_id("nope");
  auto r = Call<v1::StartContainerResponse>("StartContainer", start);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_NE(r.error().ToString().find("container nope not found"), std::string::npos);

  v1::WaitProcessRequest wait;
  wait.set_container_id("nope");
  auto w = Call<v1::WaitProcessResponse>("WaitProcess", wait);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code(), Code::kNotFound);
}

TEST_F(ServiceTest, BadRequestsAreInvalidArgument) {
  v1::CreateContainerRequest create;
  create.set_container_id("../etc");
  create.set_oci_spec_json("{}");
  create.set_rootfs_path("/tmp");
  auto r = Call<v1::CreateContainerResponse>("CreateContainer", create);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  create.set_container_id("c1");
  create.set_oci_spec_json("{not json");
  r = Call<v1::CreateContainerResponse>("CreateContainer", create);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().ToString().find("container c1"), std::string::npos);

  v1::SetupSandboxRequest setup;
  auto* m = setup.add_mounts();
  m->set_source("cask");
  m->set_fstype("virtiofs");
  m->set_target("relative/path");
  auto s = Call<v1::Empty>("SetupSandbox", setup);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  EXPECT_NE(s.error().ToString().find("mounts[0].target"), std::string::npos);
}

// Cancels until `done`: a cancel ends only the calls already blocked (an
// epoch), and a loaded machine may deliver the call after any fixed delay.
std::thread CancelUntil(Agent& agent, std::atomic<bool>& done) {
  return std::thread([&agent, &done] {
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      agent.CancelBlockingCalls();
    }
  });
}

TEST_F(ServiceTest, BlockingOomCallIsReleasedByCancel) {
  std::atomic<bool> done{false};
  std::thread canceller = CancelUntil(*agent_, done);
  auto r = client_->CallTyped<v1::OOMEvent>(kAgentService, "GetOOMEvent", v1::GetOOMEventRequest());
  done = true;
  canceller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

TEST_F(ServiceTest, SetTimeSetsTheWallClockFromTheHost) {
  v1::SetTimeRequest req;
  req.set_realtime_ns(1'800'000'000'123'456'789);
  ASSERT_TRUE(Call<v1::Empty>("SetTime", req).ok());
  EXPECT_EQ(clock_set_ns_.load(), 1'800'000'000'123'456'789);
  req.set_realtime_ns(-5);
  auto bad = Call<v1::Empty>("SetTime", req);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(clock_set_ns_.load(), 1'800'000'000'123'456'789);
}

TEST_F(ServiceTest, DestroySandboxRepliesThenPowersOff) {
  auto r = Call<v1::Empty>("DestroySandbox", v1::DestroySandboxRequest());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  // A hang guard: the power-off follows the reply after power_off_delay.
  for (int i = 0; i < 6000 && !powered_off_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(powered_off_.load());
}

// --- the event stream (GetEvents), without containers ---

v1::GetEventsRequest Poll(uint64_t ack, uint32_t wait_ms) {
  v1::GetEventsRequest req;
  req.set_ack(ack);
  req.set_wait_ms(wait_ms);
  return req;
}

TEST_F(ServiceTest, GetEventsWithNothingToReportReturnsEmptyAfterTheWait) {
  auto start = std::chrono::steady_clock::now();
  auto r = Call<v1::GetEventsResponse>("GetEvents", Poll(0, 200));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->seq(), 0u);
  EXPECT_EQ(r->output_size() + r->exits_size() + r->oom_container_ids_size(), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(190));
}

TEST_F(ServiceTest, ANewerPollEndsAnOlderOne) {
  Result<v1::GetEventsResponse> old = Error::Internal("not run");
  std::thread t([&] { old = Call<v1::GetEventsResponse>("GetEvents", Poll(0, 30'000)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto start = std::chrono::steady_clock::now();
  auto r = Call<v1::GetEventsResponse>("GetEvents", Poll(0, 0));
  t.join();
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  ASSERT_TRUE(old.ok()) << old.error().ToString();
  EXPECT_EQ(old->seq(), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ServiceTest, BlockedPollIsReleasedByCancel) {
  std::atomic<bool> done{false};
  std::thread canceller = CancelUntil(*agent_, done);
  auto r = client_->CallTyped<v1::GetEventsResponse>(kAgentService, "GetEvents", Poll(0, 30'000));
  done = true;
  canceller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

TEST_F(ServiceTest, ShortCallsAnswerWhileManyLongCallsBlock) {
  // Legacy blocking calls fill the long lane; Check still answers at once.
  // They block until cancelled: a Check queued behind them would take the
  // whole 60 s, far beyond the bound below even on a slow sanitizer build.
  std::vector<std::thread> blocked;
  for (int i = 0; i < 40; ++i)
    blocked.emplace_back([this] {
      (void)client_->CallTyped<v1::OOMEvent>(kAgentService, "GetOOMEvent", v1::GetOOMEventRequest(),
                                             std::chrono::seconds(60));
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto start = std::chrono::steady_clock::now();
  auto r = Call<v1::CheckResponse>("Check", v1::CheckRequest());
  auto took = std::chrono::steady_clock::now() - start;
  std::atomic<bool> done{false};
  std::thread canceller = CancelUntil(*agent_, done);  // also those that arrive late
  for (auto& t : blocked) t.join();
  done = true;
  canceller.join();
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_LT(took, std::chrono::seconds(20));
  EXPECT_LE(server_->thread_count(rpc::Lane::kLong), rpc::Server::Options().max_long_calls);
}

TEST(StateTest, TransitionsFollowTheLifecycle) {
  State s = State::kCreated;
  EXPECT_TRUE(Transition(&s, State::kRunning, "c").ok());
  auto bad = Transition(&s, State::kRunning, "container c");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(bad.error().ToString().find("cannot start container c in running state"), std::string::npos);
  EXPECT_EQ(s, State::kRunning);
  EXPECT_TRUE(Transition(&s, State::kStopped, "c").ok());
  EXPECT_FALSE(Transition(&s, State::kRunning, "c").ok());
  EXPECT_TRUE(Transition(&s, State::kRemoved, "c").ok());
  EXPECT_FALSE(Transition(&s, State::kRemoved, "c").ok());
  EXPECT_FALSE(Transition(&s, State::kCreated, "c").ok());
  State t = State::kCreated;
  EXPECT_TRUE(Transition(&t, State::kStopped, "c").ok());  // killed before it started
}

// --- real containers (lib/container) in a busybox rootfs on this host ---

const char* Busybox() {
  for (const char* p : {"/bin/busybox", "/usr/bin/busybox"})
    if (access(p, X_OK) == 0) return p;
  return nullptr;
}

class ContainerServiceTest : public ServiceTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    const char* bb = Busybox();
    if (bb == nullptr) GTEST_SKIP() << "needs busybox";
    char tmpl[] = "/tmp/cask-agent-svc-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    rootfs_ = dir_ + "/rootfs";
    for (const char* d : {"/bin", "/proc", "/dev", "/sys", "/tmp", "/etc"}) ASSERT_TRUE(MkdirAll(rootfs_ + d).ok());
    // No system(): the test's reaper would steal the shell's exit status.
    auto binary = ReadFile(bb);
    ASSERT_TRUE(binary.ok());
    ASSERT_TRUE(WriteFile(rootfs_ + "/bin/busybox", *binary, 0755).ok());
    for (const char* app : {"sh", "echo", "cat", "sleep", "read", "true"})
      ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/" + app).c_str()), 0);
    // cgroup v2 where the host has it (hybrid: the unified mount).
    for (const char* p : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
      struct statfs st {};
      if (statfs(p, &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC) {
        cgroup_root_ = std::string(p) + "/cask-agent-test-" + std::to_string(getpid());
        break;
      }
    }
    ServiceTest::SetUp();
  }
  void TearDown() override {
    if (client_) ServiceTest::TearDown();
    if (!cgroup_root_.empty()) rmdir(cgroup_root_.c_str());
    if (!dir_.empty()) {
      Status removed = RemoveAll(dir_);
      EXPECT_TRUE(removed.ok()) << removed.error().ToString();
    }
  }
  AgentOptions Options() override {
    AgentOptions o = ServiceTest::Options();
    o.cgroup_root = cgroup_root_;
    return o;
  }

  oci::Process Proc(std::vector<std::string> args, bool terminal = false) {
    oci::Process p;
    p.args = std::move(args);
    p.env = {"PATH=/bin", "HOME=/"};
    p.cwd = "/";
    p.terminal = terminal;
    return p;
  }

  std::string SpecJson(std::vector<std::string> args, bool terminal = false) {
    oci::Spec s;
    s.oci_version = "1.0.2";
    s.hostname = "svc-test";
    s.process = Proc(std::move(args), terminal);
    s.mounts = {
        {"/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}},
        {"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}},
        {"/dev/pts", "devpts", "devpts", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
    };
    oci::Linux lx;
    lx.namespaces = {{"pid", ""}, {"ipc", ""}, {"uts", ""}, {"mount", ""}};
    s.linux = lx;
    return oci::ToJson(s);
  }

  Status Create(const std::string& id, std::vector<std::string> args, bool open_stdin = false, bool terminal = false) {
    v1::CreateContainerRequest req;
    req.set_container_id(id);
    req.set_oci_spec_json(SpecJson(std::move(args), terminal));
    req.set_rootfs_path(rootfs_);
    req.set_stdin(open_stdin);
    auto r = Call<v1::CreateContainerResponse>("CreateContainer", req);
    if (!r.ok()) return std::move(r).error();
    EXPECT_GT(r->pid(), 0u);
    return Ok();
  }

  Result<uint32_t> Start(const std::string& id) {
    v1::StartContainerRequest req;
    req.set_container_id(id);
    auto r = Call<v1::StartContainerResponse>("StartContainer", req);
    if (!r.ok()) return std::move(r).error();
    return r->pid();
  }

  // Reads a stream to EOF.
  std::string Drain(const char* method, const std::string& id, const std::string& exec_id = "") {
    std::string out;
    for (int i = 0; i < 1000; ++i) {
      v1::ReadStreamRequest req;
      req.set_container_id(id);
      req.set_exec_id(exec_id);
      req.set_max_len(7);  // small, to exercise partial reads
      auto r = Call<v1::ReadStreamResponse>(method, req);
      EXPECT_TRUE(r.ok()) << r.error().ToString();
      if (!r.ok()) break;
      out += r->data();
      if (r->eof()) break;
    }
    return out;
  }

  Result<int> Wait(const std::string& id, const std::string& exec_id = "") {
    v1::WaitProcessRequest req;
    req.set_container_id(id);
    req.set_exec_id(exec_id);
    auto r = Call<v1::WaitProcessResponse>("WaitProcess", req);
    if (!r.ok()) return std::move(r).error();
    EXPECT_GT(r->exited_at_ns(), 0u);
    return r->exit_status();
  }

  Status Remove(const std::string& id, bool force) {
    v1::RemoveContainerRequest req;
    req.set_container_id(id);
    req.set_force(force);
    auto r = Call<v1::Empty>("RemoveContainer", req);
    if (!r.ok()) return std::move(r).error();
    return Ok();
  }

  std::string dir_, rootfs_, cgroup_root_;
};

// The open fds, as "fd -> target" lines.
std::string OpenFds() {
  std::string out;
  DIR* d = opendir("/proc/self/fd");
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] == '.' || std::to_string(dirfd(d)) == e->d_name) continue;
    char target[256] = {};
    (void)!readlink((std::string("/proc/self/fd/") + e->d_name).c_str(), target, sizeof target - 1);
    out += std::string(e->d_name) + " -> " + target + "\n";
  }
  closedir(d);
  return out;
}

TEST_F(ContainerServiceTest, StdioExitStatusAndRemove) {
  // After a round trip, so that the connection's own fds exist already.
  ASSERT_TRUE(Call<v1::CheckResponse>("Check", v1::CheckRequest()).ok());
  std::string fds_before = OpenFds();
  ASSERT_TRUE(Create("c1", {"sh", "-c", "echo out; echo err >&2; read x; echo got $x; exit 3"}, true).ok());
  // Not started yet: exec is refused.
  v1::ExecProcessRequest exec;
  exec.set_container_id("c1");
  exec.set_exec_id("e1");
  exec.set_process_json(oci::ToJson(Proc({"true"})));
  auto e = Call<v1::ExecProcessResponse>("ExecProcess", exec);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code(), Code::kFailedPrecondition);

  auto pid = Start("c1");
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  auto again = Start("c1");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);

  v1::WriteStreamRequest w;
  w.set_container_id("c1");
  w.set_data("hi\n");
  auto wr = Call<v1::WriteStreamResponse>("WriteStdin", w);
  ASSERT_TRUE(wr.ok()) << wr.error().ToString();
  EXPECT_EQ(wr->len(), 3u);
  v1::CloseStdinRequest close;
  close.set_container_id("c1");
  ASSERT_TRUE(Call<v1::Empty>("CloseStdin", close).ok());

  EXPECT_EQ(Drain("ReadStdout", "c1"), "out\ngot hi\n");
  EXPECT_EQ(Drain("ReadStderr", "c1"), "err\n");
  auto st = Wait("c1");
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(*st, 3);
  ASSERT_TRUE(Remove("c1", false).ok());
  auto gone = Remove("c1", false);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code(), Code::kNotFound);
  EXPECT_EQ(OpenFds(), fds_before);  // pipes, pidfd, pumps' eventfds all closed
}

TEST_F(ContainerServiceTest, ExecSignalAndForceRemove) {
  ASSERT_TRUE(Create("c2", {"sleep", "1000"}).ok());
  auto dup = Create("c2", {"true"});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code(), Code::kAlreadyExists);
  ASSERT_TRUE(Start("c2").ok());

  v1::ExecProcessRequest exec;
  exec.set_container_id("c2");
  exec.set_exec_id("e1");
  exec.set_process_json(oci::ToJson(Proc({"sh", "-c", "echo from exec; exit 4"})));
  auto e = Call<v1::ExecProcessResponse>("ExecProcess", exec);
  ASSERT_TRUE(e.ok()) << e.error().ToString();
  EXPECT_EQ(Drain("ReadStdout", "c2", "e1"), "from exec\n");
  auto est = Wait("c2", "e1");
  ASSERT_TRUE(est.ok());
  EXPECT_EQ(*est, 4);
  auto e2 = Call<v1::ExecProcessResponse>("ExecProcess", exec);
  ASSERT_FALSE(e2.ok());
  EXPECT_EQ(e2.error().code(), Code::kAlreadyExists);

  // Exec of a missing binary: the error comes back with its code before
  // anything runs, and no process is kept.
  exec.set_exec_id("e2");
  exec.set_process_json(oci::ToJson(Proc({"/bin/nonexistent"})));
  auto bad = Call<v1::ExecProcessResponse>("ExecProcess", exec);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ExecFailureOf(bad.error()), ExecFailure::kNotFound) << bad.error().ToString();
  auto bst = Wait("c2", "e2");
  ASSERT_FALSE(bst.ok());
  EXPECT_EQ(bst.error().code(), Code::kNotFound);

  auto busy = Remove("c2", false);
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().code(), Code::kFailedPrecondition);

  v1::SignalProcessRequest sig;
  sig.set_container_id("c2");
  sig.set_signal(SIGKILL);
  ASSERT_TRUE(Call<v1::Empty>("SignalProcess", sig).ok());
  auto st = Wait("c2");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 128 + SIGKILL);
  auto late = Call<v1::Empty>("SignalProcess", sig);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code(), Code::kNotFound);
  ASSERT_TRUE(Remove("c2", true).ok());
}

TEST_F(ContainerServiceTest, RemoveProcessFreesTheExecId) {
  ASSERT_TRUE(Create("c5", {"sleep", "1000"}).ok());
  ASSERT_TRUE(Start("c5").ok());
  std::string fds_before = OpenFds();
  auto remove = [&](const std::string& exec_id) {
    v1::RemoveProcessRequest req;
    req.set_container_id("c5");
    req.set_exec_id(exec_id);
    return Call<v1::Empty>("RemoveProcess", req);
  };
  v1::ExecProcessRequest exec;
  exec.set_container_id("c5");
  exec.set_exec_id("e1");
  exec.set_process_json(oci::ToJson(Proc({"sh", "-c", "read x; echo first $x"})));
  exec.set_stdin(true);
  ASSERT_TRUE(Call<v1::ExecProcessResponse>("ExecProcess", exec).ok());
  // Running: refused, and it keeps running.
  auto busy = remove("e1");
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().code(), Code::kFailedPrecondition) << busy.error().ToString();
  v1::CloseStdinRequest close;
  close.set_container_id("c5");
  close.set_exec_id("e1");
  ASSERT_TRUE(Call<v1::Empty>("CloseStdin", close).ok());
  EXPECT_EQ(Drain("ReadStdout", "c5", "e1"), "first\n");
  ASSERT_TRUE(Wait("c5", "e1").ok());
  ASSERT_TRUE(remove("e1").ok());
  EXPECT_EQ(OpenFds(), fds_before);  // its pipes, pidfd and pumps are closed
  // Its record is gone: wait, stdio and a second remove are NOT_FOUND.
  auto w = Wait("c5", "e1");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code(), Code::kNotFound);
  v1::ReadStreamRequest rd;
  rd.set_container_id("c5");
  rd.set_exec_id("e1");
  auto r = Call<v1::ReadStreamResponse>("ReadStdout", rd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  auto again = remove("e1");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), Code::kNotFound);
  EXPECT_EQ(remove("").error().code(), Code::kInvalidArgument);  // the init goes with the container
  EXPECT_EQ(remove("nope").error().code(), Code::kNotFound);

  // The same id again, a new process with its own stdio.
  exec.set_stdin(false);
  exec.set_process_json(oci::ToJson(Proc({"sh", "-c", "echo second; exit 6"})));
  ASSERT_TRUE(Call<v1::ExecProcessResponse>("ExecProcess", exec).ok());
  EXPECT_EQ(Drain("ReadStdout", "c5", "e1"), "second\n");
  auto st = Wait("c5", "e1");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 6);
  ASSERT_TRUE(remove("e1").ok());
  ASSERT_TRUE(Remove("c5", true).ok());
  v1::RemoveProcessRequest gone;
  gone.set_container_id("c5");
  gone.set_exec_id("e1");
  EXPECT_EQ(Call<v1::Empty>("RemoveProcess", gone).error().code(), Code::kNotFound);
}

TEST_F(ContainerServiceTest, MissingProgramFailsCreateAndLeavesNothing) {
  auto c = Create("c3", {"/bin/nonexistent"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ExecFailureOf(c.error()), ExecFailure::kNotFound) << c.error().ToString();
  EXPECT_NE(c.error().ToString().find("executable \"/bin/nonexistent\""), std::string::npos) << c.error().ToString();
  // The id is free again: nothing of the failed container is kept.
  ASSERT_TRUE(Create("c3", {"/bin/sh", "-c", "exit 3"}).ok());
  ASSERT_TRUE(Start("c3").ok());
  auto st = Wait("c3");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 3);
  ASSERT_TRUE(Remove("c3", false).ok());
}

TEST_F(ContainerServiceTest, TerminalProcess) {
  ASSERT_TRUE(Create("c4", {"sh", "-c", "echo tty; exit 0"}, false, true).ok());
  v1::TtyWinResizeRequest resize;
  resize.set_container_id("c4");
  resize.set_rows(40);
  resize.set_cols(100);
  ASSERT_TRUE(Call<v1::Empty>("TtyWinResize", resize).ok());
  ASSERT_TRUE(Start("c4").ok());
  EXPECT_EQ(Drain("ReadStdout", "c4"), "tty\r\n");
  EXPECT_EQ(Drain("ReadStderr", "c4"), "");
  auto st = Wait("c4");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 0);
  ASSERT_TRUE(Remove("c4", false).ok());
}

TEST_F(ContainerServiceTest, RemovingACreatedContainerKillsItsInit) {
  ASSERT_TRUE(Create("c5", {"sleep", "1000"}).ok());
  ASSERT_TRUE(Remove("c5", false).ok());
  v1::WaitProcessRequest req;
  req.set_container_id("c5");
  auto r = Call<v1::WaitProcessResponse>("WaitProcess", req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
}

// --- the event stream with real processes ---

struct Collected {
  std::map<std::string, std::string> out;  // "cid/eid/stream" -> bytes
  std::set<std::string> eof;
  std::map<std::string, int> exits;  // "cid/eid" -> status
};

class EventStreamTest : public ContainerServiceTest {
 protected:
  // Polls until `done` holds or 20 s pass, acking each batch. Grants `grant`
  // bytes of credit to every stream that sent output, after each batch.
  void PollUntil(Collected& c, const std::function<bool(const Collected&)>& done, uint32_t grant = 65536) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done(c) && std::chrono::steady_clock::now() < end) {
      auto r = Call<v1::GetEventsResponse>("GetEvents", Poll(ack_, 500));
      ASSERT_TRUE(r.ok()) << r.error().ToString();
      if (r->seq() == 0) continue;
      EXPECT_EQ(r->seq(), ack_ + 1);
      ack_ = r->seq();
      v1::GrantOutputRequest g;
      for (const auto& o : r->output()) {
        std::string k = o.container_id() + "/" + o.exec_id() + "/" + (o.stream() == v1::STDERR ? "err" : "out");
        EXPECT_FALSE(c.eof.count(k)) << "data after EOF on " << k;
        c.out[k] += o.data();
        if (o.eof()) c.eof.insert(k);
        if (!o.data().empty() && grant > 0) {
          auto* cr = g.add_credits();
          cr->set_container_id(o.container_id());
          cr->set_exec_id(o.exec_id());
          cr->set_stream(o.stream());
          cr->set_bytes(static_cast<uint32_t>(o.data().size()));
        }
      }
      for (const auto& x : r->exits()) c.exits[x.container_id() + "/" + x.exec_id()] = x.exit_status();
      if (g.credits_size() > 0) {
        ASSERT_TRUE(Call<v1::Empty>("GrantOutput", g).ok());
      }
    }
  }
  uint64_t ack_ = 0;
};

TEST_F(EventStreamTest, OutputAndExitsOfManyProcessesComeInOneStream) {
  ASSERT_TRUE(Create("ev1", {"sh", "-c", "echo init-out; echo init-err >&2; sleep 30"}).ok());
  ASSERT_TRUE(Start("ev1").ok());
  constexpr int kExecs = 20;
  for (int i = 0; i < kExecs; ++i) {
    v1::ExecProcessRequest ex;
    ex.set_container_id("ev1");
    ex.set_exec_id("e" + std::to_string(i));
    ex.set_process_json(oci::ToJson(Proc({"sh", "-c", "echo out" + std::to_string(i) + "; exit " + std::to_string(i)})));
    ASSERT_TRUE(Call<v1::ExecProcessResponse>("ExecProcess", ex).ok());
  }
  Collected c;
  PollUntil(c, [&](const Collected& c) {
    return c.exits.size() >= kExecs && c.eof.size() >= 2 * kExecs && c.out.count("ev1//err");
  });
  for (int i = 0; i < kExecs; ++i) {
    std::string k = "ev1/e" + std::to_string(i);
    ASSERT_TRUE(c.exits.count(k)) << k;
    EXPECT_EQ(c.exits[k], i);
    EXPECT_EQ(c.out[k + "/out"], "out" + std::to_string(i) + "\n");
    EXPECT_TRUE(c.eof.count(k + "/out"));
    EXPECT_TRUE(c.eof.count(k + "/err"));
  }
  EXPECT_EQ(c.out["ev1//out"], "init-out\n");
  EXPECT_EQ(c.out["ev1//err"], "init-err\n");
  // The init is still running: no exit for it yet. Kill it; its exit comes.
  EXPECT_FALSE(c.exits.count("ev1/"));
  v1::SignalProcessRequest sig;
  sig.set_container_id("ev1");
  sig.set_signal(SIGKILL);
  ASSERT_TRUE(Call<v1::Empty>("SignalProcess", sig).ok());
  PollUntil(c, [](const Collected& c) { return c.exits.count("ev1/") > 0; });
  EXPECT_EQ(c.exits["ev1/"], 128 + SIGKILL);
  ASSERT_TRUE(Remove("ev1", false).ok());
}

TEST_F(EventStreamTest, OutputWaitsForCreditAndALostReplyIsSentAgain) {
  // 300 KiB of output: more than the initial 64 KiB credit.
  ASSERT_TRUE(Create("ev2", {"sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789; i=$((i+1)); done"}).ok());
  ASSERT_TRUE(Start("ev2").ok());
  Collected c;
  // Without grants the stream stops at the credit.
  PollUntil(
      c, [](const Collected& c) { return c.out.count("ev2//out") && c.out.at("ev2//out").size() >= kInitialOutputCredit; },
      /*grant=*/0);
  auto r = Call<v1::GetEventsResponse>("GetEvents", Poll(ack_, 300));
  ASSERT_TRUE(r.ok());
  size_t extra = 0;
  for (const auto& o : r->output()) extra += o.data().size();
  EXPECT_EQ(c.out["ev2//out"].size() + extra, kInitialOutputCredit);
  if (r->seq() != 0) ack_ = r->seq();
  // Grant the rest: everything arrives, in order.
  v1::GrantOutputRequest g;
  auto* cr = g.add_credits();
  cr->set_container_id("ev2");
  cr->set_stream(v1::STDOUT);
  cr->set_bytes(1 << 20);
  ASSERT_TRUE(Call<v1::Empty>("GrantOutput", g).ok());
  auto first = Call<v1::GetEventsResponse>("GetEvents", Poll(ack_, 2000));
  ASSERT_TRUE(first.ok());
  ASSERT_NE(first->seq(), 0u);
  // Pretend the reply was lost: the same ack gets the same batch again.
  auto again = Call<v1::GetEventsResponse>("GetEvents", Poll(ack_, 2000));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->seq(), first->seq());
  EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
  ack_ = first->seq();
  for (const auto& o : first->output()) c.out["ev2//out"] += o.data();
  PollUntil(c, [](const Collected& c) { return c.eof.count("ev2//out") > 0; });
  EXPECT_EQ(c.out["ev2//out"].size(), 3000u * 101);
  ASSERT_TRUE(Remove("ev2", true).ok());
}

// Grants that carry the stream's total are idempotent: the host sends one
// again after a lost reply without giving the stream more credit.
TEST_F(EventStreamTest, TotalGrantsCanBeRepeated) {
  ASSERT_TRUE(Create("ev3", {"sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789; i=$((i+1)); done"}).ok());
  ASSERT_TRUE(Start("ev3").ok());
  Collected c;
  auto at_least = [](size_t n) {
    return [n](const Collected& c) { return c.out.count("ev3//out") && c.out.at("ev3//out").size() >= n; };
  };
  PollUntil(c, at_least(kInitialOutputCredit), /*grant=*/0);
  v1::GrantOutputRequest g;
  auto* cr = g.add_credits();
  cr->set_container_id("ev3");
  cr->set_stream(v1::STDOUT);
  cr->set_bytes(999);  // ignored: total wins
  cr->set_total(2 * kInitialOutputCredit);
  ASSERT_TRUE(Call<v1::Empty>("GrantOutput", g).ok());
  ASSERT_TRUE(Call<v1::Empty>("GrantOutput", g).ok());  // the same grant again
  PollUntil(c, at_least(2 * kInitialOutputCredit), /*grant=*/0);
  // Nothing beyond the total comes, however long we ask.
  auto r = Call<v1::GetEventsResponse>("GetEvents", Poll(ack_, 300));
  ASSERT_TRUE(r.ok());
  size_t extra = 0;
  for (const auto& o : r->output()) extra += o.data().size();
  if (r->seq() != 0) ack_ = r->seq();
  EXPECT_EQ(c.out["ev3//out"].size() + extra, 2 * kInitialOutputCredit);
  c.out["ev3//out"].resize(c.out["ev3//out"].size() + extra, 'x');
  cr->set_total(1 << 20);
  ASSERT_TRUE(Call<v1::Empty>("GrantOutput", g).ok());
  PollUntil(c, [](const Collected& c) { return c.eof.count("ev3//out") > 0; });
  EXPECT_EQ(c.out["ev3//out"].size(), 3000u * 101);
  ASSERT_TRUE(Remove("ev3", true).ok());
}

}  // namespace
}  // namespace cask::agent
