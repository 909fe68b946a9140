// TaskService against a fake hypervisor whose "VM" is a FakeAgent on a
// socketpair (no QEMU): lifecycle, Wait before Start with several waiters,
// precise state errors, event order, exec, config errors before any VM.
// The host mounts are the recording ones of fake_mounts_for_test.h, so the
// suite needs no root (the kernel's mounts are tested in lib/sandbox and
// end to end).
#include "cmd/containerd-shim-cask-v2/task_service.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/fake_mounts_for_test.h"
#include "lib/sandbox/fake_vm_for_test.h"
#include "lib/sandbox/pod_shm.h"
#include "lib/sandbox/sandbox.h"
#include "lib/sandbox/shared_dir.h"

namespace cask::shim {
namespace {

using namespace std::chrono_literals;
namespace pb = ::cask::agent::v1;
using sandbox::testing::FakeHypervisor;
using sandbox::testing::FakeWorld;

constexpr uint32_t kTeardownMs = 700;
// Room over the teardown timeouts for the local work on a loaded machine
// running a sanitizer build (3-10x slower). What the bounds catch is a
// teardown that waits for a silent guest, which never ends.
constexpr auto kLocalWorkSlack = std::chrono::seconds(30);

// A share of one core that a busy loop would exceed. Sanitizer builds run
// the same work several times slower, so their figure is scaled.
// The RSS bound of the 4 MiB OOM flood: AddressSanitizer keeps freed
// blocks in its quarantine (256 MiB by default) before reusing them, so its
// figure is the quarantine plus the same slack.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr double kSpinShare = 3.0;
constexpr long long kFloodRssSlack = (256ll + 64) << 20;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr double kSpinShare = 3.0;
constexpr long long kFloodRssSlack = (256ll + 64) << 20;
#else
constexpr double kSpinShare = 1.0;
constexpr long long kFloodRssSlack = 64ll << 20;
#endif
#else
constexpr double kSpinShare = 1.0;
constexpr long long kFloodRssSlack = 64ll << 20;
#endif

// CPU time (user + system) of this process.
std::chrono::microseconds CpuTime() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& t) { return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec); };
  return std::chrono::duration_cast<std::chrono::microseconds>(us(ru.ru_utime) + us(ru.ru_stime));
}

// Resident set size of this process, in bytes.
size_t Rss() {
  auto statm = ReadFile("/proc/self/statm");
  if (!statm.ok()) return 0;
  size_t pages = 0, resident = 0;
  std::sscanf(statm->c_str(), "%zu %zu", &pages, &resident);
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

class TaskServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-task-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_TRUE(MkdirAll(root_ + "/rootfs/bin").ok());
    TaskService::Deps d;
    d.ns = "default";
    d.publish = [this](const TaskEvent& e) {
      std::lock_guard l(ev_mu_);
      topics_.push_back(Encode(e).topic);
    };
    d.create_sandbox = [this](sandbox::SandboxOptions o) {
      o.hypervisor = std::make_unique<FakeHypervisor>(world_);
      o.mounts = mounts_;
      return sandbox::Sandbox::Create(std::move(o));
    };
    d.load_config = [this](const std::string& path) -> Result<config::Config> {
      if (!path.empty()) return Error::InvalidArgument(path + ": hypervisor.bogus: unknown key");
      config::Config c;
      c.runtime.state_dir = root_ + "/state";
      c.agent.connect_timeout_ms = 5000;
      c.agent.teardown_timeout_ms = kTeardownMs;
      return c;
    };
    svc_ = std::make_unique<TaskService>(std::move(d));
  }
  void TearDown() override {
    if (root_.empty()) return;
    svc_.reset();
    EXPECT_EQ(mounts_->active(), 0u) << "a bind or rootfs mount was left";
    (void)sandbox::UnmountAllUnder(root_);
    ASSERT_TRUE(sandbox::RemoveTreeNoMounts(root_).ok());
  }

  CreateTaskParams Bundle(const std::string& id, std::vector<std::string> args = {"sh"},
                          std::map<std::string, std::string> annotations = {}) {
    std::string b = root_ + "/bundles/" + id;
    EXPECT_TRUE(MkdirAll(b).ok());
    oci::Spec spec = oci::DefaultSpec(args, false);
    spec.root = oci::Root{root_ + "/rootfs", false};
    spec.annotations = std::move(annotations);
    EXPECT_TRUE(WriteFile(b + "/config.json", oci::ToJson(spec)).ok());
    CreateTaskParams p;
    p.id = id;
    p.bundle = b;
    return p;
  }
  // Runs `body` for `window` and returns the CPU share it used (1.0 = one
  // core busy) and the RSS growth.
  struct Cost {
    double cpu_share;
    long long rss_growth;
  };
  Cost Measure(std::chrono::milliseconds window) {
    auto cpu0 = CpuTime();
    size_t rss0 = Rss();
    auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(window);
    auto wall = std::chrono::steady_clock::now() - t0;
    auto cpu = CpuTime() - cpu0;
    return Cost{std::chrono::duration<double>(cpu).count() / std::chrono::duration<double>(wall).count(),
                static_cast<long long>(Rss()) - static_cast<long long>(rss0)};
  }
  // Kill + Delete of the task, timed; the VM must be gone afterwards.
  void KillAndDeleteWithinTimeout(const std::string& id) {
    auto t0 = std::chrono::steady_clock::now();
    Status k = svc_->Kill(id, "", 9, true);
    EXPECT_TRUE(k.ok() || k.error().code() == Code::kNotFound) << k.error().ToString();
    // As containerd does: the exit, then Delete.
    auto w = svc_->Wait(id, "");
    ASSERT_TRUE(w.ok()) << w.error().ToString();
    auto d = svc_->Delete(id, "");
    auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_TRUE(d.ok()) << d.error().ToString();
    EXPECT_EQ(d->exit_status, 137u);
    // Each of Kill, the exit's output drain and Delete may wait the
    // teardown timeout once; the rest is local work.
    EXPECT_LT(took, std::chrono::milliseconds(3 * kTeardownMs) + kLocalWorkSlack);
    EXPECT_TRUE(svc_->Empty());
    EXPECT_EQ(world_.stopped.load(), 1);  // the VM was destroyed
    EXPECT_FALSE(PathExists(root_ + "/state/" + id));
  }
  std::vector<std::string> Topics() {
    std::lock_guard l(ev_mu_);
    return topics_;
  }

  std::string root_;
  FakeWorld world_;
  std::shared_ptr<sandbox::testing::FakeHostMounts> mounts_ = std::make_shared<sandbox::testing::FakeHostMounts>();
  std::mutex ev_mu_;
  std::vector<std::string> topics_;
  std::unique_ptr<TaskService> svc_;
};

TEST_F(TaskServiceTest, LifecycleWaitBeforeStartAndEventOrder) {
  auto pid = svc_->Create(Bundle("c1"));
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  EXPECT_EQ(*pid, 4242u);  // the VMM pid, like Kata
  EXPECT_EQ(world_.started.load(), 1);
  EXPECT_EQ(svc_->State("c1", "")->state, ProcessState::kCreated);

  auto pause = svc_->Pause("c1");
  ASSERT_FALSE(pause.ok());
  EXPECT_EQ(pause.error().ToString(), "cannot pause task in created state");

  // Two waiters, before Start.
  auto w1 = std::async(std::launch::async, [&] { return svc_->Wait("c1", ""); });
  auto w2 = std::async(std::launch::async, [&] { return svc_->Wait("c1", ""); });
  EXPECT_EQ(w1.wait_for(200ms), std::future_status::timeout);

  ASSERT_TRUE(svc_->Start("c1", "").ok());
  EXPECT_EQ(svc_->State("c1", "")->state, ProcessState::kRunning);
  auto again = svc_->Start("c1", "");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), Code::kFailedPrecondition);

  auto del_running = svc_->Delete("c1", "");
  ASSERT_FALSE(del_running.ok());
  EXPECT_EQ(del_running.error().ToString(), "cannot delete a running task");

  auto pids = svc_->Pids("c1");
  ASSERT_TRUE(pids.ok());
  ASSERT_FALSE(pids->empty());
  EXPECT_EQ(pids->front().pid, 4242u);

  ASSERT_TRUE(svc_->Kill("c1", "", 9, false).ok());
  auto e1 = w1.get();
  auto e2 = w2.get();
  ASSERT_TRUE(e1.ok()) << e1.error().ToString();
  ASSERT_TRUE(e2.ok());
  EXPECT_EQ(e1->exit_status, 137u);
  EXPECT_EQ(e2->exit_status, 137u);
  EXPECT_EQ(svc_->State("c1", "")->state, ProcessState::kStopped);
  EXPECT_EQ(svc_->Kill("c1", "", 9, false).error().code(), Code::kNotFound);

  auto del = svc_->Delete("c1", "");
  ASSERT_TRUE(del.ok()) << del.error().ToString();
  EXPECT_EQ(del->exit_status, 137u);
  EXPECT_TRUE(svc_->Empty());
  EXPECT_EQ(svc_->Wait("c1", "").error().code(), Code::kNotFound);
  EXPECT_EQ(svc_->State("c1", "").error().code(), Code::kNotFound);
  EXPECT_FALSE(PathExists(root_ + "/state/c1"));  // the VM went with the last task

  EXPECT_EQ(Topics(), (std::vector<std::string>{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}));
}

TEST_F(TaskServiceTest, Exec) {
  ASSERT_TRUE(svc_->Create(Bundle("c2")).ok());
  ExecParams ep;
  ep.id = "c2";
  ep.exec_id = "e1";
  ep.process_json = R"({"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}})";
  auto early = svc_->Exec(ep);
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().code(), Code::kFailedPrecondition);  // task not started yet
  ASSERT_TRUE(svc_->Start("c2", "").ok());
  ASSERT_TRUE(svc_->Exec(ep).ok());
  EXPECT_EQ(svc_->Exec(ep).error().code(), Code::kAlreadyExists);
  ExecParams bad = ep;
  bad.exec_id = "e2";
  bad.process_json = R"({"args":[],"cwd":"/"})";
  auto badr = svc_->Exec(bad);
  ASSERT_FALSE(badr.ok());
  EXPECT_EQ(badr.error().code(), Code::kInvalidArgument);

  auto w = std::async(std::launch::async, [&] { return svc_->Wait("c2", "e1"); });
  auto started = svc_->Start("c2", "e1");
  ASSERT_TRUE(started.ok()) << started.error().ToString();
  EXPECT_EQ(*started, 20u);
  ASSERT_TRUE(svc_->Kill("c2", "e1", 15, false).ok());
  auto ex = w.get();
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->exit_status, 143u);
  ASSERT_TRUE(svc_->Delete("c2", "e1").ok());
  EXPECT_EQ(svc_->State("c2", "e1").error().code(), Code::kNotFound);
  {
    std::lock_guard l(world_.mu);
    EXPECT_EQ(world_.removed, std::vector<std::string>{"c2/e1"});  // the guest forgets it too
  }
  // The exec id can be used again.
  ASSERT_TRUE(svc_->Exec(ep).ok());
  auto w2 = std::async(std::launch::async, [&] { return svc_->Wait("c2", "e1"); });
  ASSERT_TRUE(svc_->Start("c2", "e1").ok());
  ASSERT_TRUE(svc_->Kill("c2", "e1", 9, false).ok());
  ASSERT_TRUE(w2.get().ok());
  ASSERT_TRUE(svc_->Delete("c2", "e1").ok());

  ASSERT_TRUE(svc_->Kill("c2", "", 9, false).ok());
  ASSERT_TRUE(svc_->Wait("c2", "").ok());
  ASSERT_TRUE(svc_->Delete("c2", "").ok());
  EXPECT_EQ(Topics(), (std::vector<std::string>{"/tasks/create", "/tasks/start", "/tasks/exec-added",
                                                "/tasks/exec-started", "/tasks/exit", "/tasks/exec-added",
                                                "/tasks/exec-started", "/tasks/exit", "/tasks/exit",
                                                "/tasks/delete"}));
}

TEST_F(TaskServiceTest, ErrorsBeforeAnyVm) {
  auto p = Bundle("c3");
  p.config_path = "/etc/cask/bad.toml";
  auto r = svc_->Create(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().ToString().find("hypervisor.bogus"), std::string::npos) << r.error().ToString();

  auto q = Bundle("c4");
  ASSERT_TRUE(WriteFile(q.bundle + "/config.json", R"({"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"rel"},)"
                                               R"("linux":{"namespaces":[{"type":"network"},{"type":"pid"},{"type":"ipc"}]}})").ok());
  auto s = svc_->Create(q);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().ToString().find("process.cwd"), std::string::npos) << s.error().ToString();

  auto m = Bundle("c5");
  oci::Spec spec = oci::DefaultSpec({"sh"}, false);
  spec.root = oci::Root{root_ + "/missing", false};
  ASSERT_TRUE(WriteFile(m.bundle + "/config.json", oci::ToJson(spec)).ok());
  auto t = svc_->Create(m);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().ToString().find(root_ + "/missing"), std::string::npos) << t.error().ToString();

  auto pod = Bundle("c6");
  spec = oci::DefaultSpec({"sh"}, false);
  spec.root = oci::Root{root_ + "/rootfs", false};
  spec.annotations = {{"io.kubernetes.cri.container-type", "container"}, {"io.kubernetes.cri.sandbox-id", "nopod"}};
  ASSERT_TRUE(WriteFile(pod.bundle + "/config.json", oci::ToJson(spec)).ok());
  EXPECT_EQ(svc_->Create(pod).error().code(), Code::kFailedPrecondition);

  EXPECT_EQ(world_.started.load(), 0);
  EXPECT_TRUE(svc_->Empty());
  EXPECT_TRUE(Topics().empty());
}

// Hostile agent (a): OOM notifications with 4 MiB ids, as fast as the shim
// asks. None is published (no such container), the calls are paced, the
// shim stays cheap, and the pod still tears down.
TEST_F(TaskServiceTest, HostileOomFloodIsBoundedAndRefused) {
  world_.oom_id_bytes = (4u << 20) - 4096;  // the largest reply a ttrpc frame carries
  world_.oom_flood = true;
  // The watcher starts in Create: every call it makes starts after this.
  auto before_watcher = std::chrono::steady_clock::now();
  ASSERT_TRUE(svc_->Create(Bundle("h1")).ok());
  ASSERT_TRUE(svc_->Start("h1", "").ok());
  auto cpu0 = CpuTime();
  size_t rss0 = Rss();
  auto t0 = std::chrono::steady_clock::now();
  // Waits for the calls themselves, however slow the build or the machine
  // (the guard only stops a hang).
  constexpr size_t kCalls = 5;
  auto calls = world_.WaitForOomCalls(kCalls, 300s);
  ASSERT_GE(calls.size(), kCalls) << "the OOM watcher stopped calling";
  auto wall = std::chrono::steady_clock::now() - t0;
  double cpu_share = std::chrono::duration<double>(CpuTime() - cpu0).count() / std::chrono::duration<double>(wall).count();
  long long rss_growth = static_cast<long long>(Rss()) - static_cast<long long>(rss0);
  // The bound, independent of load: call k starts at least k intervals
  // after the first one started, which was after `before_watcher`. A slow
  // machine only makes the calls later.
  for (size_t k = 0; k < calls.size(); k++) {
    EXPECT_GE(calls[k] - before_watcher, static_cast<int>(k) * kOomPollInterval) << "call " << k << " came too early: not paced";
  }
  // The CPU figure is this whole process's: it includes the fake agent
  // building and encoding its 4 MiB replies (about half of it, measured
  // with perf) as well as the shim receiving them. A watcher that did not
  // pace its calls would take a whole core on its own side alone; a loaded
  // machine only lowers the share.
  EXPECT_LT(cpu_share, kSpinShare) << "the OOM watcher must pace its calls";
  EXPECT_LT(rss_growth, kFloodRssSlack);
  for (const auto& t : Topics()) EXPECT_NE(t, "/tasks/oom");
  KillAndDeleteWithinTimeout("h1");
}

// Hostile agent (b): every read of the output answers at once with an
// empty chunk that is not EOF. The shim must not spin, and Delete must not
// wait forever for an output that never ends.
TEST_F(TaskServiceTest, HostileEmptyReadsDoNotSpinOrHang) {
  world_.empty_reads = true;
  auto p = Bundle("h2");
  p.stdio.stdout_path = "file://" + root_ + "/h2.out";
  p.stdio.stderr_path = "file://" + root_ + "/h2.err";
  ASSERT_TRUE(svc_->Create(p).ok());
  ASSERT_TRUE(svc_->Start("h2", "").ok());
  std::this_thread::sleep_for(300ms);
  Cost cost = Measure(2s);
  EXPECT_LT(cost.cpu_share, 0.5) << "empty non-EOF reads must back off";
  EXPECT_LT(cost.rss_growth, 64ll << 20);
  KillAndDeleteWithinTimeout("h2");
}

// Hostile agent (c): after start, nothing is ever answered again. Kill and
// Delete still finish within the configured timeout, the VM is destroyed
// and the task is reported killed (137).
TEST_F(TaskServiceTest, SilentAgentTeardownDestroysTheVm) {
  ASSERT_TRUE(svc_->Create(Bundle("h3")).ok());
  ASSERT_TRUE(svc_->Start("h3", "").ok());
  auto waiter = std::async(std::launch::async, [&] { return svc_->Wait("h3", ""); });
  world_.silent = true;
  Cost cost = Measure(500ms);
  EXPECT_LT(cost.cpu_share, 0.5);
  KillAndDeleteWithinTimeout("h3");
  auto w = waiter.get();
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  EXPECT_EQ(w->exit_status, 137u);
  auto topics = Topics();
  ASSERT_GE(topics.size(), 2u);
  EXPECT_EQ(topics[topics.size() - 2], "/tasks/exit");
  EXPECT_EQ(topics.back(), "/tasks/delete");
}

// Shutdown (the shim's SIGTERM) with a silent agent: bounded, VM gone,
// tasks exited 137.
TEST_F(TaskServiceTest, SilentAgentStopIsBounded) {
  ASSERT_TRUE(svc_->Create(Bundle("h4")).ok());
  ASSERT_TRUE(svc_->Start("h4", "").ok());
  auto waiter = std::async(std::launch::async, [&] { return svc_->Wait("h4", ""); });
  world_.silent = true;
  auto t0 = std::chrono::steady_clock::now();
  svc_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(kTeardownMs) + kLocalWorkSlack);
  EXPECT_EQ(world_.stopped.load(), 1);
  auto w = waiter.get();
  // Either the exit (137) or, once the task is gone, NOT_FOUND.
  if (w.ok()) {
    EXPECT_EQ(w->exit_status, 137u);
  }
  EXPECT_TRUE(svc_->Empty());
}

// The codes containerd sees, one per kind of failure.
TEST_F(TaskServiceTest, ErrorCodesContainerdSees) {
  // Unknown ids: NOT_FOUND, and only they.
  EXPECT_EQ(svc_->State("nope", "").error().code(), Code::kNotFound);
  EXPECT_EQ(svc_->Kill("nope", "", 9, false).error().code(), Code::kNotFound);
  EXPECT_EQ(svc_->Delete("nope", "").error().code(), Code::kNotFound);
  EXPECT_EQ(svc_->Start("nope", "").error().code(), Code::kNotFound);
  // A bundle without config.json: the request's fault, not "no such task".
  CreateTaskParams nobundle;
  nobundle.id = "nb";
  nobundle.bundle = root_ + "/no-bundle";
  EXPECT_EQ(svc_->Create(nobundle).error().code(), Code::kInvalidArgument);
  // A guest failure while creating: INTERNAL, not INVALID_ARGUMENT.
  world_.create_fails = true;
  auto cf = svc_->Create(Bundle("e0"));
  ASSERT_FALSE(cf.ok());
  EXPECT_EQ(cf.error().code(), Code::kInternal) << cf.error().ToString();
  world_.create_fails = false;

  ASSERT_TRUE(svc_->Create(Bundle("e1")).ok());
  EXPECT_EQ(svc_->Create(Bundle("e1")).error().code(), Code::kAlreadyExists);
  EXPECT_EQ(svc_->State("e1", "x").error().code(), Code::kNotFound);  // unknown exec id
  ASSERT_TRUE(svc_->Start("e1", "").ok());
  // An exec of a missing program: FAILED_PRECONDITION with the reason.
  ExecParams ep;
  ep.id = "e1";
  ep.exec_id = "x1";
  ep.process_json = R"({"args":[")" + world_.missing_program + R"("],"cwd":"/","user":{"uid":0,"gid":0}})";
  ASSERT_TRUE(svc_->Exec(ep).ok());
  auto st = svc_->Start("e1", "x1");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kFailedPrecondition) << st.error().ToString();
  EXPECT_EQ(ExecFailureOf(st.error()), ExecFailure::kNotFound);
  ASSERT_TRUE(svc_->Delete("e1", "x1").ok());
  // Kill of a stopped task: containerd's "process already finished".
  ASSERT_TRUE(svc_->Kill("e1", "", 9, false).ok());
  ASSERT_TRUE(svc_->Wait("e1", "").ok());
  EXPECT_EQ(svc_->Kill("e1", "", 9, false).error().code(), Code::kNotFound);
  EXPECT_EQ(svc_->Stats("e1").error().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(svc_->Delete("e1", "").ok());
}

// containerd expects a missing program to fail NewTask (Create), as runc
// does; the pod of one container leaves no VM.
TEST_F(TaskServiceTest, MissingProgramFailsCreateAndLeavesNoVm) {
  auto c = svc_->Create(Bundle("m1", {world_.missing_program}));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kFailedPrecondition) << c.error().ToString();
  EXPECT_EQ(ExecFailureOf(c.error()), ExecFailure::kNotFound);
  EXPECT_NE(c.error().ToString().find("executable \"" + world_.missing_program + "\""), std::string::npos)
      << c.error().ToString();
  EXPECT_EQ(world_.started.load(), 1);
  EXPECT_EQ(world_.stopped.load(), 1);
  EXPECT_TRUE(svc_->Empty());
  EXPECT_FALSE(PathExists(root_ + "/state/m1"));
  EXPECT_TRUE(Topics().empty());
}

TEST_F(TaskServiceTest, OomKillIsPublishedBeforeTheExit) {
  ASSERT_TRUE(svc_->Create(Bundle("o1")).ok());
  ASSERT_TRUE(svc_->Start("o1", "").ok());
  {
    std::lock_guard l(world_.mu);
    world_.oom_kills["o1"] = 1;  // the guest's memory.events says oom_kill 1
  }
  ASSERT_TRUE(svc_->Kill("o1", "", 9, false).ok());
  ASSERT_TRUE(svc_->Wait("o1", "").ok());
  // Delete waits for the exit delivery: TaskExit is out when it returns.
  ASSERT_TRUE(svc_->Delete("o1", "").ok());
  auto t = Topics();
  auto oom = std::find(t.begin(), t.end(), "/tasks/oom");
  auto exit = std::find(t.begin(), t.end(), "/tasks/exit");
  ASSERT_NE(oom, t.end()) << "no TaskOOM";
  ASSERT_NE(exit, t.end());
  EXPECT_LT(oom, exit);
  EXPECT_EQ(std::count(t.begin(), t.end(), "/tasks/oom"), 1);
}

TEST_F(TaskServiceTest, TimesAreTheHostsAndTheGuestClockIsSet) {
  auto before = std::chrono::system_clock::now();
  ASSERT_TRUE(svc_->Create(Bundle("t1")).ok());
  // The guest clock was set from the host's at boot.
  EXPECT_GE(world_.set_times.load(), 1);
  auto set_at = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::nanoseconds(world_.last_set_time_ns.load())));
  EXPECT_GE(set_at, before);
  EXPECT_LE(set_at, std::chrono::system_clock::now());
  ASSERT_TRUE(svc_->Start("t1", "").ok());
  ASSERT_TRUE(svc_->Kill("t1", "", 9, false).ok());
  auto w = svc_->Wait("t1", "");
  ASSERT_TRUE(w.ok());
  // The fake guest reports an exit time in 2023: the host's is used.
  EXPECT_GE(w->exited_at, before);
  EXPECT_LE(w->exited_at, std::chrono::system_clock::now());
  ASSERT_TRUE(svc_->Delete("t1", "").ok());
}

TEST_F(TaskServiceTest, ResizePtyWithoutATerminalIsANoOp) {
  ASSERT_TRUE(svc_->Create(Bundle("r1")).ok());
  EXPECT_TRUE(svc_->ResizePty("r1", "", 80, 24).ok());
  ASSERT_TRUE(svc_->Start("r1", "").ok());
  EXPECT_TRUE(svc_->ResizePty("r1", "", 120, 40).ok());
  EXPECT_EQ(svc_->ResizePty("r1", "nope", 1, 1).error().code(), Code::kNotFound);
  ASSERT_TRUE(svc_->Kill("r1", "", 9, false).ok());
  ASSERT_TRUE(svc_->Wait("r1", "").ok());
  ASSERT_TRUE(svc_->Delete("r1", "").ok());
}

TEST_F(TaskServiceTest, PodVmSizeFromAnnotationsWithinBounds) {
  auto bad = svc_->Create(Bundle("s1", {"sh"}, {{"io.cask.vcpus", "99"}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.error().ToString().find("io.cask.vcpus"), std::string::npos) << bad.error().ToString();
  EXPECT_EQ(world_.started.load(), 0);  // nothing was started
  EXPECT_TRUE(Topics().empty());

  ASSERT_TRUE(svc_->Create(Bundle("s2", {"sh"}, {{"io.cask.vcpus", "2"}, {"io.cask.memory_mib", "512"}})).ok());
  {
    std::lock_guard l(world_.mu);
    EXPECT_EQ(world_.last_config.vcpus, 2u);
    EXPECT_EQ(world_.last_config.memory_mib, 512u);
    // The pod's /dev/shm tmpfs is mounted at setup.
    bool shm = false;
    for (const auto& m : world_.last_setup.mounts())
      if (m.target() == sandbox::kGuestPodShmDir && m.fstype() == "tmpfs") shm = true;
    EXPECT_TRUE(shm);
  }
  ASSERT_TRUE(svc_->Delete("s2", "").ok());
}

TEST_F(TaskServiceTest, RuncShimCgroupThatDoesNotExistFailsCreate) {
  CreateTaskParams p = Bundle("g1");
  p.shim_cgroup = "/cask-test-no-such-cgroup";
  auto r = svc_->Create(p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().ToString().find("shim_cgroup"), std::string::npos) << r.error().ToString();
  p.shim_cgroup = "/../etc";
  EXPECT_EQ(svc_->Create(p).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(world_.started.load(), 0);
}

TEST(OomEventFilter, OnlyKnownCoalescedAndRateLimited) {
  OomEventFilter f({std::chrono::milliseconds(1000), 2});
  auto t = OomEventFilter::Clock::now();
  EXPECT_FALSE(f.Accept("ghost", false, t));
  EXPECT_TRUE(f.Accept("a", true, t));
  EXPECT_FALSE(f.Accept("a", true, t + 10ms));  // coalesced
  EXPECT_TRUE(f.Accept("b", true, t + 20ms));
  EXPECT_FALSE(f.Accept("c", true, t + 30ms));  // over 2 per second
  EXPECT_TRUE(f.Accept("c", true, t + 800ms));  // a token came back
  EXPECT_TRUE(f.Accept("a", true, t + 1500ms)); // the window passed
  EXPECT_EQ(f.unknown(), 1u);
  EXPECT_EQ(f.coalesced(), 1u);
  EXPECT_EQ(f.rate_limited(), 1u);
}

}  // namespace
}  // namespace cask::shim
