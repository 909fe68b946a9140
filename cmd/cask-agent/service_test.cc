// The agent service over a real ttrpc connection (socketpair), in-process.
#include "cmd/cask-agent/service.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <thread>

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
    AgentOptions opts;
    opts.power_off = [this] { powered_off_ = true; };
    opts.power_off_delay = std::chrono::milliseconds(10);
    agent_ = std::make_unique<Agent>(opts, &reaper_, &oom_, Logger());
    server_ = std::make_unique<rpc::Server>();
    RegisterAgentService(*server_, *agent_, Logger());
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    serve_thread_ = std::thread([this, fd = sv[0]] { (void)server_->ServeConnection(UniqueFd(fd)); });
    client_ = std::make_unique<rpc::Client>(UniqueFd(sv[1]));
  }
  void TearDown() override {
    client_.reset();
    agent_->CancelBlockingCalls();
    server_->Shutdown();
    if (serve_thread_.joinable()) serve_thread_.join();
    server_.reset();
    agent_.reset();
  }

  template <typename Resp, typename Req>
  Result<Resp> Call(const char* method, const Req& req) {
    return client_->CallTyped<Resp>(kAgentService, method, req, std::chrono::seconds(10));
  }

  Reaper reaper_;
  OomWatcher oom_;
  std::atomic<bool> powered_off_{false};
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<rpc::Server> server_;
  std::thread serve_thread_;
  std::unique_ptr<rpc::Client> client_;
};

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

TEST_F(ServiceTest, BlockingOomCallIsReleasedByCancel) {
  std::thread canceller([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    agent_->CancelBlockingCalls();
  });
  auto r = client_->CallTyped<v1::OOMEvent>(kAgentService, "GetOOMEvent", v1::GetOOMEventRequest());
  canceller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

TEST_F(ServiceTest, DestroySandboxRepliesThenPowersOff) {
  auto r = Call<v1::Empty>("DestroySandbox", v1::DestroySandboxRequest());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  for (int i = 0; i < 200 && !powered_off_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(powered_off_.load());
}

}  // namespace
}  // namespace cask::agent
