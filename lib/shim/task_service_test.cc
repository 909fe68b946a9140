// TaskService against a fake hypervisor whose "VM" is a FakeAgent on a
// socketpair (no QEMU): lifecycle, Wait before Start with several waiters,
// precise state errors, event order, exec, config errors before any VM.
#include "lib/shim/task_service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/fake_agent_for_test.h"
#include "lib/sandbox/sandbox.h"
#include "lib/sandbox/shared_dir.h"

namespace cask::shim {
namespace {

using namespace std::chrono_literals;
namespace pb = ::cask::agent::v1;
using sandbox::testing::FakeAgent;

// The guest as the fake agent sees it: process exits keyed by
// "container/exec".
struct World {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, int> exits;
  std::vector<std::string> removed;  // RemoveProcess calls, as keys
  bool stopping = false;
  std::atomic<int> vms{0};

  void Exit(const std::string& key, int status) {
    std::lock_guard l(mu);
    exits.emplace(key, status);
    cv.notify_all();
  }
};

std::string Key(const std::string& c, const std::string& e) { return c + "/" + e; }

class FakeVm : public hypervisor::Vm {
 public:
  explicit FakeVm(World& w) : w_(w) {
    w_.vms++;
    fake_.On<pb::CheckRequest, pb::CheckResponse>("Check", [](const pb::CheckRequest&) -> Result<pb::CheckResponse> {
      pb::CheckResponse r;
      r.set_kernel_release("6.1.0-fake");
      return r;
    });
    fake_.On<pb::SetupSandboxRequest, pb::Empty>("SetupSandbox",
                                                 [](const pb::SetupSandboxRequest&) -> Result<pb::Empty> { return pb::Empty{}; });
    fake_.On<pb::DestroySandboxRequest, pb::Empty>("DestroySandbox",
                                                   [](const pb::DestroySandboxRequest&) -> Result<pb::Empty> { return pb::Empty{}; });
    fake_.On<pb::CreateContainerRequest, pb::CreateContainerResponse>(
        "CreateContainer", [](const pb::CreateContainerRequest&) -> Result<pb::CreateContainerResponse> {
          pb::CreateContainerResponse r;
          r.set_pid(10);
          return r;
        });
    fake_.On<pb::StartContainerRequest, pb::StartContainerResponse>(
        "StartContainer", [](const pb::StartContainerRequest&) -> Result<pb::StartContainerResponse> {
          pb::StartContainerResponse r;
          r.set_pid(10);
          return r;
        });
    fake_.On<pb::ExecProcessRequest, pb::ExecProcessResponse>(
        "ExecProcess", [](const pb::ExecProcessRequest&) -> Result<pb::ExecProcessResponse> {
          pb::ExecProcessResponse r;
          r.set_pid(20);
          return r;
        });
    fake_.On<pb::SignalProcessRequest, pb::Empty>("SignalProcess", [this](const pb::SignalProcessRequest& r) -> Result<pb::Empty> {
      w_.Exit(Key(r.container_id(), r.exec_id()), 128 + static_cast<int>(r.signal()));
      return pb::Empty{};
    });
    fake_.On<pb::RemoveContainerRequest, pb::Empty>("RemoveContainer", [this](const pb::RemoveContainerRequest& r) -> Result<pb::Empty> {
      w_.Exit(Key(r.container_id(), ""), 137);
      return pb::Empty{};
    });
    fake_.On<pb::RemoveProcessRequest, pb::Empty>("RemoveProcess", [this](const pb::RemoveProcessRequest& r) -> Result<pb::Empty> {
      std::lock_guard l(w_.mu);
      std::string k = Key(r.container_id(), r.exec_id());
      if (!w_.exits.count(k)) return Error::FailedPrecondition(k + " is still running");
      w_.exits.erase(k);
      w_.removed.push_back(k);
      return pb::Empty{};
    });
    fake_.On<pb::WaitProcessRequest, pb::WaitProcessResponse>(
        "WaitProcess", [this](const pb::WaitProcessRequest& r) -> Result<pb::WaitProcessResponse> {
          std::unique_lock l(w_.mu);
          std::string k = Key(r.container_id(), r.exec_id());
          w_.cv.wait(l, [&] { return w_.stopping || w_.exits.count(k); });
          if (!w_.exits.count(k)) return Error::Unavailable("agent going away");
          pb::WaitProcessResponse resp;
          resp.set_exit_status(w_.exits[k]);
          resp.set_exited_at_ns(1700000000ull * 1000000000ull);
          return resp;
        });
    auto eof = [](const pb::ReadStreamRequest&) -> Result<pb::ReadStreamResponse> {
      pb::ReadStreamResponse r;
      r.set_eof(true);
      return r;
    };
    fake_.On<pb::ReadStreamRequest, pb::ReadStreamResponse>("ReadStdout", eof);
    fake_.On<pb::ReadStreamRequest, pb::ReadStreamResponse>("ReadStderr", eof);
    fake_.On<pb::ListProcessesRequest, pb::ListProcessesResponse>(
        "ListProcesses", [](const pb::ListProcessesRequest&) -> Result<pb::ListProcessesResponse> {
          pb::ListProcessesResponse r;
          r.add_pids(10);
          return r;
        });
    fake_.On<pb::PauseContainerRequest, pb::Empty>("PauseContainer",
                                                   [](const pb::PauseContainerRequest&) -> Result<pb::Empty> { return pb::Empty{}; });
    fake_.On<pb::ResumeContainerRequest, pb::Empty>("ResumeContainer",
                                                    [](const pb::ResumeContainerRequest&) -> Result<pb::Empty> { return pb::Empty{}; });
    fake_.On<pb::GetOOMEventRequest, pb::OOMEvent>("GetOOMEvent", [this](const pb::GetOOMEventRequest&) -> Result<pb::OOMEvent> {
      std::unique_lock l(w_.mu);
      w_.cv.wait(l, [&] { return w_.stopping; });
      return Error::Unavailable("agent going away");
    });
    fake_.Serve();
  }
  ~FakeVm() override { (void)Stop(1s); }
  pid_t pid() const override { return 4242; }
  hypervisor::Channel channel() const override { return hypervisor::Channel::kSerial; }
  Result<UniqueFd> ConnectAgent(std::chrono::milliseconds) override { return fake_.TakeClientEnd(); }
  Status Stop(std::chrono::milliseconds) override {
    if (!stopped_) {
      stopped_ = true;
      {
        std::lock_guard l(w_.mu);
        w_.stopping = true;  // blocked handlers return, so the server can stop
        w_.cv.notify_all();
      }
      fake_.Stop();
    }
    return Ok();
  }
  bool Exited() override { return stopped_; }
  std::string console_log_path() const override { return ""; }
  std::string ConsoleTail(size_t) const override { return ""; }

 private:
  World& w_;
  FakeAgent fake_;
  std::atomic<bool> stopped_{false};
};

class FakeHypervisor : public hypervisor::Hypervisor {
 public:
  explicit FakeHypervisor(World& w) : w_(w) {}
  Result<std::unique_ptr<hypervisor::Vm>> Start(const hypervisor::VmSettings&) override {
    return std::unique_ptr<hypervisor::Vm>(new FakeVm(w_));
  }

 private:
  World& w_;
};

class TaskServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (rootfs bind mounts)";
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
      return sandbox::Sandbox::Create(std::move(o));
    };
    d.load_config = [this](const std::string& path) -> Result<config::Config> {
      if (!path.empty()) return Error::InvalidArgument(path + ": hypervisor.bogus: unknown key");
      config::Config c;
      c.runtime.state_dir = root_ + "/state";
      c.agent.connect_timeout_ms = 5000;
      return c;
    };
    svc_ = std::make_unique<TaskService>(std::move(d));
  }
  void TearDown() override {
    if (root_.empty()) return;
    svc_.reset();
    (void)sandbox::UnmountAllUnder(root_);
    ASSERT_TRUE(sandbox::RemoveTreeNoMounts(root_).ok());
  }

  CreateTaskParams Bundle(const std::string& id) {
    std::string b = root_ + "/bundles/" + id;
    EXPECT_TRUE(MkdirAll(b).ok());
    oci::Spec spec = oci::DefaultSpec({"sh"}, false);
    spec.root = oci::Root{root_ + "/rootfs", false};
    EXPECT_TRUE(WriteFile(b + "/config.json", oci::ToJson(spec)).ok());
    CreateTaskParams p;
    p.id = id;
    p.bundle = b;
    return p;
  }
  std::vector<std::string> Topics() {
    std::lock_guard l(ev_mu_);
    return topics_;
  }

  std::string root_;
  World world_;
  std::mutex ev_mu_;
  std::vector<std::string> topics_;
  std::unique_ptr<TaskService> svc_;
};

TEST_F(TaskServiceTest, LifecycleWaitBeforeStartAndEventOrder) {
  auto pid = svc_->Create(Bundle("c1"));
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  EXPECT_EQ(*pid, 4242u);  // the VMM pid, like Kata
  EXPECT_EQ(world_.vms.load(), 1);
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
  ASSERT_TRUE(WriteFile(q.bundle + "/config.json", R"({"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"rel"}})").ok());
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

  EXPECT_EQ(world_.vms.load(), 0);
  EXPECT_TRUE(svc_->Empty());
  EXPECT_TRUE(Topics().empty());
}

}  // namespace
}  // namespace cask::shim
