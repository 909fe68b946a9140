#include "lib/shim/events.h"

#include <gtest/gtest.h>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"

namespace cask::shim {
namespace {

TEST(Events, BareTypeUrlsAndTopics) {
  struct Case {
    TaskEvent ev;
    const char* topic;
    const char* url;
  } cases[] = {
      {TaskCreateEvent{}, "/tasks/create", "containerd.events.TaskCreate"},
      {TaskStartEvent{}, "/tasks/start", "containerd.events.TaskStart"},
      {TaskExitEvent{}, "/tasks/exit", "containerd.events.TaskExit"},
      {TaskDeleteEvent{}, "/tasks/delete", "containerd.events.TaskDelete"},
      {TaskExecAddedEvent{}, "/tasks/exec-added", "containerd.events.TaskExecAdded"},
      {TaskExecStartedEvent{}, "/tasks/exec-started", "containerd.events.TaskExecStarted"},
      {TaskPausedEvent{}, "/tasks/paused", "containerd.events.TaskPaused"},
      {TaskResumedEvent{}, "/tasks/resumed", "containerd.events.TaskResumed"},
      {TaskOomEvent{}, "/tasks/oom", "containerd.events.TaskOOM"},
  };
  for (const auto& c : cases) {
    auto e = Encode(c.ev);
    EXPECT_EQ(e.topic, c.topic);
    EXPECT_EQ(e.type_url, c.url);
    EXPECT_EQ(e.type_url.find('/'), std::string::npos) << "type URL must be bare: " << e.type_url;
  }
}

TEST(Events, TaskExitFields) {
  TaskExitEvent x{"c1", "e1", 77, 137, std::chrono::system_clock::time_point(std::chrono::seconds(12))};
  auto e = Encode(x);
  ::containerd::events::TaskExit m;
  ASSERT_TRUE(m.ParseFromString(e.value));
  EXPECT_EQ(m.container_id(), "c1");
  EXPECT_EQ(m.id(), "e1");
  EXPECT_EQ(m.pid(), 77u);
  EXPECT_EQ(m.exit_status(), 137u);
  EXPECT_EQ(m.exited_at().seconds(), 12);
}

TEST(Events, TaskDeleteFields) {
  TaskDeleteEvent x{"c2", "c2", 5, 1, std::chrono::system_clock::time_point(std::chrono::seconds(34))};
  auto e = Encode(x);
  ::containerd::events::TaskDelete m;
  ASSERT_TRUE(m.ParseFromString(e.value));
  EXPECT_EQ(m.container_id(), "c2");
  EXPECT_EQ(m.id(), "c2");
  EXPECT_EQ(m.pid(), 5u);
  EXPECT_EQ(m.exit_status(), 1u);
  EXPECT_EQ(m.exited_at().seconds(), 34);
}

TEST(Events, TaskCreateFields) {
  TaskCreateEvent c;
  c.container_id = "c";
  c.bundle = "/b";
  c.rootfs = {{"overlay", "overlay", "", {"lowerdir=/l", "upperdir=/u"}}};
  c.stdout_path = "/fifo/out";
  c.terminal = true;
  c.pid = 9;
  ::containerd::events::TaskCreate m;
  ASSERT_TRUE(m.ParseFromString(Encode(c).value));
  EXPECT_EQ(m.bundle(), "/b");
  ASSERT_EQ(m.rootfs_size(), 1);
  EXPECT_EQ(m.rootfs(0).options(1), "upperdir=/u");
  EXPECT_EQ(m.io().stdout(), "/fifo/out");
  EXPECT_TRUE(m.io().terminal());
  EXPECT_EQ(m.pid(), 9u);
}

TEST(Events, EnvelopeAlwaysTimestamped) {
  auto e = Encode(TaskOomEvent{"c9"});
  auto when = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000) + std::chrono::milliseconds(3));
  ::containerd::services::events::ttrpc::v1::ForwardRequest req;
  ASSERT_TRUE(req.ParseFromString(EncodeForwardRequest(e, "default", when)));
  const auto& env = req.envelope();
  EXPECT_EQ(env.namespace_(), "default");
  EXPECT_EQ(env.topic(), "/tasks/oom");
  EXPECT_EQ(env.event().type_url(), "containerd.events.TaskOOM");
  EXPECT_EQ(env.timestamp().seconds(), 1700000000);
  EXPECT_EQ(env.timestamp().nanos(), 3000000);
  ::containerd::events::TaskOOM oom;
  ASSERT_TRUE(oom.ParseFromString(env.event().value()));
  EXPECT_EQ(oom.container_id(), "c9");
}

}  // namespace
}  // namespace cask::shim
