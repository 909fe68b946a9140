#include "lib/shim/publisher.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "lib/rpc/server.h"

namespace cask::shim {
namespace {

namespace evpb = ::containerd::services::events::ttrpc::v1;

// A stand-in for containerd's ttrpc events service on a unix socket.
class FakeContainerd {
 public:
  explicit FakeContainerd(std::string path) : path_(std::move(path)) {}
  ~FakeContainerd() { Stop(); }

  void Start() {
    server_ = std::make_unique<rpc::Server>();
    server_->Register(std::string(kEventsService), "Forward",
                      [this](const rpc::CallContext& ctx, const std::string& payload) -> Result<std::string> {
                        evpb::ForwardRequest req;
                        if (!req.ParseFromString(payload)) return Error::InvalidArgument("bad ForwardRequest");
                        std::lock_guard lk(mu_);
                        if (reject_topic_ == req.envelope().topic()) return Error::InvalidArgument("rejected");
                        envelopes_.push_back(req.envelope());
                        for (auto& [k, v] : ctx.metadata)
                          if (k == kNamespaceMetadataKey) ns_metadata_ = v;
                        return std::string();  // google.protobuf.Empty
                      });
    auto fd = rpc::ListenUnix(path_);
    ASSERT_TRUE(fd.ok()) << fd.error().ToString();
    thread_ = std::thread([this, fd = std::move(fd).value()]() mutable { (void)server_->Serve(std::move(fd)); });
  }
  void Stop() {
    if (!server_) return;
    server_->Shutdown();
    thread_.join();
    server_.reset();
    ::unlink(path_.c_str());
  }
  std::vector<evpb::Envelope> envelopes() {
    std::lock_guard lk(mu_);
    return envelopes_;
  }
  std::string ns_metadata() {
    std::lock_guard lk(mu_);
    return ns_metadata_;
  }
  void RejectTopic(std::string t) {
    std::lock_guard lk(mu_);
    reject_topic_ = std::move(t);
  }

 private:
  std::string path_;
  std::unique_ptr<rpc::Server> server_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<evpb::Envelope> envelopes_;
  std::string ns_metadata_;
  std::string reject_topic_;
};

class PublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-pub-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/containerd.sock.ttrpc";
  }
  void TearDown() override { ::rmdir(dir_.c_str()); }

  EventPublisher::Options Opts() {
    EventPublisher::Options o;
    o.ttrpc_address = sock_;
    o.ns = "testns";
    o.retry_delay = std::chrono::milliseconds(20);
    return o;
  }

  static std::string ExitId(const evpb::Envelope& env) {
    ::containerd::events::TaskExit m;
    EXPECT_EQ(env.event().type_url(), "containerd.events.TaskExit");
    EXPECT_TRUE(m.ParseFromString(env.event().value()));
    return m.id();
  }

  std::string dir_, sock_;
};

TEST_F(PublisherTest, DeliversInOrderWithEnvelope) {
  FakeContainerd cd(sock_);
  cd.Start();
  EventPublisher pub(Opts(), Logger());
  for (int i = 0; i < 100; ++i) pub.Publish(TaskExitEvent{"c", "e" + std::to_string(i), 1, 0, {}});
  ASSERT_TRUE(pub.Flush(std::chrono::seconds(10)));
  auto envs = cd.envelopes();
  ASSERT_EQ(envs.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(ExitId(envs[i]), "e" + std::to_string(i));
    EXPECT_EQ(envs[i].namespace_(), "testns");
    EXPECT_EQ(envs[i].topic(), "/tasks/exit");
    EXPECT_GT(envs[i].timestamp().seconds(), 0);
  }
  EXPECT_EQ(cd.ns_metadata(), "testns");
  EXPECT_EQ(pub.delivered(), 100u);
  EXPECT_EQ(pub.dropped(), 0u);
}

TEST_F(PublisherTest, ReconnectsAndResendsAfterRestart) {
  auto cd = std::make_unique<FakeContainerd>(sock_);
  cd->Start();
  EventPublisher pub(Opts(), Logger());
  pub.Publish(TaskExitEvent{"c", "before", 1, 0, {}});
  ASSERT_TRUE(pub.Flush(std::chrono::seconds(5)));
  ASSERT_EQ(cd->envelopes().size(), 1u);

  // containerd goes away; events published meanwhile wait in the queue.
  cd->Stop();
  for (int i = 0; i < 5; ++i) pub.Publish(TaskExitEvent{"c", "during" + std::to_string(i), 1, 0, {}});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(pub.Flush(std::chrono::milliseconds(1)));

  // A new containerd on the same socket gets all of them, in order.
  auto cd2 = std::make_unique<FakeContainerd>(sock_);
  cd2->Start();
  ASSERT_TRUE(pub.Flush(std::chrono::seconds(10)));
  auto envs = cd2->envelopes();
  ASSERT_EQ(envs.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ExitId(envs[i]), "during" + std::to_string(i));
  EXPECT_EQ(pub.dropped(), 0u);
}

TEST_F(PublisherTest, RejectedEventIsDroppedAndOthersFollow) {
  FakeContainerd cd(sock_);
  cd.Start();
  cd.RejectTopic("/tasks/oom");
  EventPublisher pub(Opts(), Logger());
  pub.Publish(TaskOomEvent{"c"});
  pub.Publish(TaskExitEvent{"c", "after", 1, 0, {}});
  ASSERT_TRUE(pub.Flush(std::chrono::seconds(5)));
  auto envs = cd.envelopes();
  ASSERT_EQ(envs.size(), 1u);
  EXPECT_EQ(ExitId(envs[0]), "after");
  EXPECT_EQ(pub.dropped(), 1u);
}

TEST_F(PublisherTest, GivesUpAfterMaxAttempts) {
  auto o = Opts();
  o.max_attempts = 3;
  EventPublisher pub(o, Logger());  // nobody listens
  pub.Publish(TaskOomEvent{"c"});
  ASSERT_TRUE(pub.Flush(std::chrono::seconds(5)));
  EXPECT_EQ(pub.dropped(), 1u);
}

TEST_F(PublisherTest, QueueIsBoundedInBytesAndNeverBlocks) {
  auto o = Opts();
  o.max_attempts = 1000000;  // nobody listens: everything stays queued
  o.max_queue_bytes = 64 * 1024;
  EventPublisher pub(o, Logger());
  auto t0 = std::chrono::steady_clock::now();
  // 1000 events of ~1 KiB: far more bytes than the bound, fewer than max_queue.
  for (int i = 0; i < 1000; ++i) pub.Publish(TaskOomEvent{std::string(1000, 'a') + std::to_string(i)});
  // One event larger than the whole bound is refused outright.
  pub.Publish(TaskOomEvent{std::string(100 * 1024, 'b')});
  // A Publish that blocked on the absent sink would never return; the
  // bound leaves room for a loaded sanitizer build.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  // At most ~64 KiB stay queued: about 60 of the 1000 events.
  EXPECT_GE(pub.dropped(), 1000u - 70u);
  EXPECT_LE(pub.dropped(), 1000u - 50u + 1u);
  pub.Close(std::chrono::milliseconds(10));
}

TEST_F(PublisherTest, NoSink) {
  auto o = Opts();
  o.ttrpc_address.clear();
  EventPublisher pub(o, Logger());
  pub.Publish(TaskOomEvent{"c"});
  EXPECT_TRUE(pub.Flush(std::chrono::milliseconds(100)));
  EXPECT_EQ(pub.delivered(), 0u);
}

}  // namespace
}  // namespace cask::shim
