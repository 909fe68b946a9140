// Container against the shared fake VM (fake_vm_for_test.h): creation
// order, unwinding after a failure at each step, the exit delivery, the
// guest-independent teardown, and GuestDeadline. The Container cases run
// with the recording mounts of fake_mounts_for_test.h (no root needed) and
// with the kernel's (as root).
#include "lib/sandbox/container.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <sstream>

#include "lib/base/fs.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/fake_mounts_for_test.h"
#include "lib/sandbox/fake_vm_for_test.h"
#include "lib/sandbox/sandbox.h"

namespace cask::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::FakeHypervisor;
using testing::FakeWorld;

// Mount points at or below `prefix`, from /proc/self/mountinfo.
int MountsUnder(const std::string& prefix) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, mp;
    f >> id >> parent >> dev >> root >> mp;
    if (mp == prefix || mp.rfind(prefix + "/", 0) == 0) ++n;
  }
  return n;
}

// The parameter: true for the kernel's mounts.
class ContainerTest : public ::testing::TestWithParam<bool> {
 protected:
  bool kernel_mounts() const { return GetParam(); }
  void SetUp() override {
    if (kernel_mounts() && ::geteuid() != 0) GTEST_SKIP() << "needs root (the kernel's mounts; the Fake run needs none)";
    char tmpl[] = "/tmp/cask-container-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_TRUE(MkdirAll(root_ + "/image/bin").ok());
    ASSERT_TRUE(WriteFile(root_ + "/image/bin/sh", "#!").ok());
    ASSERT_TRUE(MkdirAll(root_ + "/bundle/rootfs").ok());
    SandboxOptions o;
    o.id = "pod";
    o.config.runtime.state_dir = root_ + "/state";
    o.config.agent.connect_timeout_ms = 5000;
    o.hypervisor = std::make_unique<FakeHypervisor>(world_);
    if (!kernel_mounts()) o.mounts = fake_;
    auto sb = Sandbox::Create(std::move(o));
    ASSERT_TRUE(sb.ok()) << sb.error().ToString();
    sb_ = std::move(sb).value();
  }
  void TearDown() override {
    if (root_.empty()) return;
    if (sb_) (void)sb_->Destroy();
    sb_.reset();
    EXPECT_EQ(fake_->active(), 0u) << "a bind or rootfs mount was left";
    (void)UnmountAllUnder(root_);
    ASSERT_TRUE(RemoveTreeNoMounts(root_).ok());
  }
  ContainerOptions Options(const std::string& id) {
    ContainerOptions o;
    o.id = id;
    o.spec = oci::DefaultSpec({"sh"}, false);
    o.rootfs_dir = root_ + "/bundle/rootfs";
    o.rootfs_mounts = {{"bind", root_ + "/image", {"rbind"}}};
    o.on_exit = [this](Process& p, const ExitInfo& e) {
      std::lock_guard l(mu_);
      exits_.push_back(p.exec_id() + "=" + std::to_string(e.status));
    };
    o.drain_after_loss = 100ms;
    return o;
  }
  std::vector<std::string> Exits() {
    std::lock_guard l(mu_);
    return exits_;
  }

  // Mounts made under root_ (the kernel's), or recorded (the fake's).
  int Mounts() { return kernel_mounts() ? MountsUnder(root_) : static_cast<int>(fake_->active()); }
  // containerd's rootfs is mounted on the bundle.
  bool RootfsMounted() {
    return kernel_mounts() ? PathExists(root_ + "/bundle/rootfs/bin/sh") : fake_->RootfsMounted(root_ + "/bundle/rootfs");
  }

  std::string root_;
  FakeWorld world_;
  std::shared_ptr<testing::FakeHostMounts> fake_ = std::make_shared<testing::FakeHostMounts>();
  std::shared_ptr<Sandbox> sb_;
  std::mutex mu_;
  std::vector<std::string> exits_;
};

TEST_P(ContainerTest, CreateStartExecRemoveUnwinds) {
  const int base = Mounts();
  auto c = Container::Create(sb_, Options("c1"));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_TRUE(RootfsMounted());  // containerd's rootfs is mounted
  EXPECT_GT(Mounts(), base + 1);                    // and shared into the VM
  EXPECT_EQ((*c)->guest_pid(), 10u);
  EXPECT_EQ((*c)->init()->state(), ProcessState::kCreated);

  // Exec needs a running init.
  EXPECT_EQ((*c)->AddExec("e1", *oci::DefaultSpec({"sh"}, false).process).error().code(), Code::kFailedPrecondition);
  auto pid = (*c)->Start(*(*c)->init(), {});
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  EXPECT_EQ((*c)->init()->state(), ProcessState::kRunning);
  EXPECT_EQ((*c)->Start(*(*c)->init(), {}).error().code(), Code::kFailedPrecondition);

  auto e1 = (*c)->AddExec("e1", *oci::DefaultSpec({"sh"}, false).process);
  ASSERT_TRUE(e1.ok());
  EXPECT_EQ((*c)->AddExec("e1", *oci::DefaultSpec({"sh"}, false).process).error().code(), Code::kAlreadyExists);
  ASSERT_TRUE((*c)->Start(**e1, {}).ok());
  EXPECT_EQ((*e1)->pid(), 20u);
  ASSERT_TRUE((*e1)->Signal(SIGTERM).ok());
  auto ex = (*e1)->WaitExitFor(5s);
  ASSERT_TRUE(ex.has_value());
  EXPECT_EQ(ex->status, 143u);
  EXPECT_EQ((*e1)->state(), ProcessState::kStopped);
  EXPECT_EQ((*e1)->Signal(SIGTERM).error().code(), Code::kNotFound);  // "process already finished"
  ASSERT_TRUE((*c)->RemoveExec("e1", 5s).ok());
  EXPECT_EQ((*c)->Find("e1"), nullptr);

  // An exec the guest cannot run stays created and carries the reason.
  oci::Process missing = *oci::DefaultSpec({world_.missing_program}, false).process;
  auto e2 = (*c)->AddExec("e2", missing);
  ASSERT_TRUE(e2.ok());
  auto bad = (*c)->Start(**e2, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ExecFailureOf(bad.error()), ExecFailure::kNotFound) << bad.error().ToString();
  EXPECT_EQ((*e2)->state(), ProcessState::kCreated);
  ASSERT_TRUE((*c)->RemoveExec("e2", 5s).ok());

  ASSERT_TRUE((*c)->Remove(5s).ok());
  EXPECT_EQ((*c)->init()->exit()->status, 137u);
  c->reset();
  EXPECT_EQ(Mounts(), base);  // share and rootfs unmounted
  EXPECT_FALSE(RootfsMounted());
  EXPECT_EQ(Exits(), (std::vector<std::string>{"e1=143", "=137"}));
}

TEST_P(ContainerTest, FailedRootfsMountLeavesNothing) {
  const int base = Mounts();
  auto o = Options("c2");
  o.rootfs_mounts.push_back({"bind", root_ + "/missing", {"rbind"}});
  auto c = Container::Create(sb_, std::move(o));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().ToString().find("mount rootfs"), std::string::npos) << c.error().ToString();
  EXPECT_EQ(Mounts(), base);
  std::lock_guard l(world_.mu);
  EXPECT_TRUE(world_.created.empty());
}

TEST_P(ContainerTest, FailedShareUnmountsTheRootfs) {
  const int base = Mounts();
  auto o = Options("c3");
  o.rootfs_mounts.clear();
  o.rootfs_dir = root_ + "/nonexistent";
  auto c = Container::Create(sb_, std::move(o));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().ToString().find("share rootfs"), std::string::npos) << c.error().ToString();
  EXPECT_EQ(Mounts(), base);

  // With containerd's mounts: a failing bind-mount source fails after the
  // rootfs was mounted and shared; both are undone.
  auto o2 = Options("c3b");
  o2.spec.mounts.push_back(oci::Mount{"/data", "bind", root_ + "/no-such-volume", {"rbind"}});
  auto c2 = Container::Create(sb_, std::move(o2));
  ASSERT_FALSE(c2.ok());
  EXPECT_EQ(Mounts(), base);
  EXPECT_FALSE(RootfsMounted());
}

TEST_P(ContainerTest, FailedGuestCreateUnwinds) {
  const int base = Mounts();
  world_.create_fails = true;
  auto c = Container::Create(sb_, Options("c4"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kInternal);  // the guest's EINVAL is not the caller's invalid argument
  EXPECT_EQ(Mounts(), base);
  EXPECT_FALSE(RootfsMounted());
  // The id can be used again.
  world_.create_fails = false;
  auto again = Container::Create(sb_, Options("c4"));
  ASSERT_TRUE(again.ok()) << again.error().ToString();
}

TEST_P(ContainerTest, SilentGuestRemoveTimesOutThenVmKillEndsEverything) {
  auto c = Container::Create(sb_, Options("c5"));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE((*c)->Start(*(*c)->init(), {}).ok());
  world_.silent = true;
  auto t0 = std::chrono::steady_clock::now();
  // The agent's RemoveContainer never answers: the owner bounds it.
  Status st;
  {
    GuestDeadline d(300ms, [&] {
      (*c)->MarkVmKilled();
      sb_->agent().Close();
    });
    st = (*c)->Remove(300ms);
    EXPECT_TRUE(d.expired());
  }
  // Without the deadline Remove would wait forever for the silent guest;
  // the bound leaves room for a loaded sanitizer build.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
  (void)st;  // either the exits came (agent closed) or the wait timed out
  ASSERT_TRUE(sb_->Destroy().ok());
  auto exit = (*c)->init()->WaitExitFor(5s);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->status, kKilledExitStatus);
  c->reset();  // prompt: the agent is closed
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
}

INSTANTIATE_TEST_SUITE_P(Mounts, ContainerTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Kernel" : "Fake"; });

TEST(GuestDeadline, FiresOnlyWhenNotDisarmedInTime) {
  std::atomic<int> fired{0};
  {
    GuestDeadline d(5s, [&] { fired++; });
  }
  EXPECT_EQ(fired.load(), 0);
  {
    GuestDeadline d(10ms, [&] { fired++; });
    // Its thread runs when the machine lets it: wait for the expiry itself
    // (a hang guard only).
    for (int i = 0; i < 3000 && !d.expired(); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_TRUE(d.expired());
  }
  EXPECT_EQ(fired.load(), 1);
}

}  // namespace
}  // namespace cask::sandbox
