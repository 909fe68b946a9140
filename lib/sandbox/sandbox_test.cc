// Sandbox against a fake hypervisor whose "VM" is a FakeAgent on a
// socketpair: boot order, unwinding on failure, sharing, teardown. Each
// case runs twice: with the recording mounts of fake_mounts_for_test.h
// (no root needed) and with the kernel's (as root).
#include "lib/sandbox/sandbox.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/sandbox/fake_mounts_for_test.h"
#include "lib/sandbox/fake_vm_for_test.h"
#include "lib/net/netns.h"
#include "lib/net/netns_for_test.h"
#include "lib/net/rtnl.h"
#include "lib/net/tap.h"

namespace cask::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::FakeHypervisor;
using testing::FakeWorld;
namespace pb = ::cask::agent::v1;

// The parameter: true for the kernel's mounts.
class SandboxTest : public ::testing::TestWithParam<bool> {
 protected:
  bool kernel_mounts() const { return GetParam(); }
  void SetUp() override {
    if (kernel_mounts() && ::geteuid() != 0) GTEST_SKIP() << "needs root (the kernel's mounts; the Fake run needs none)";
    char tmpl[] = "/tmp/cask-sandbox-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_TRUE(MkdirAll(root_ + "/rootfs/bin").ok());
    ASSERT_TRUE(WriteFile(root_ + "/rootfs/bin/sh", "#!").ok());
    ASSERT_TRUE(WriteFile(root_ + "/resolv.conf", "nameserver 10.0.0.1\n").ok());
  }
  void TearDown() override {
    if (root_.empty()) return;
    EXPECT_EQ(fake_->active(), 0u) << "a bind or rootfs mount was left";
    (void)UnmountAllUnder(root_);
    ASSERT_TRUE(RemoveTreeNoMounts(root_).ok());
  }
  SandboxOptions Options(const std::string& id) {
    SandboxOptions o;
    o.id = id;
    o.config.runtime.state_dir = root_ + "/state";
    o.config.agent.connect_timeout_ms = 5000;
    o.hostname = "box";
    o.hypervisor = std::make_unique<FakeHypervisor>(world_);
    if (!kernel_mounts()) o.mounts = fake_;
    return o;
  }
  std::string root_;
  FakeWorld world_;
  std::shared_ptr<testing::FakeHostMounts> fake_ = std::make_shared<testing::FakeHostMounts>();
};

TEST_P(SandboxTest, BootsSharesAndDestroys) {
  auto sb = Sandbox::Create(Options("sb1"));
  ASSERT_TRUE(sb.ok()) << sb.error().ToString();
  const std::string dir = root_ + "/state/sb1";
  EXPECT_EQ((*sb)->dir(), dir);
  EXPECT_EQ((*sb)->vmm_pid(), 4242);
  EXPECT_EQ((*sb)->agent_info().kernel_release, "6.1.0-fake");
  {
    std::lock_guard l(world_.mu);
    EXPECT_EQ(world_.last_config.id, "sb1");
    EXPECT_EQ(world_.last_config.state_dir, dir);
    EXPECT_EQ(world_.last_config.shared_dir, dir + "/shared");
    EXPECT_EQ(world_.last_setup.hostname(), "box");
    // The share, then the pod's own /dev/shm (a tmpfs in the guest).
    ASSERT_EQ(world_.last_setup.mounts_size(), 2);
    EXPECT_EQ(world_.last_setup.mounts(0).source(), "cask");
    EXPECT_EQ(world_.last_setup.mounts(0).fstype(), "virtiofs");
    EXPECT_EQ(world_.last_setup.mounts(0).target(), "/run/cask/shared");
    EXPECT_EQ(world_.last_setup.mounts(1).fstype(), "tmpfs");
  }

  auto guest = (*sb)->ShareRootfs("c1", root_ + "/rootfs");
  ASSERT_TRUE(guest.ok()) << guest.error().ToString();
  EXPECT_EQ(*guest, "/run/cask/shared/c1/rootfs");
  EXPECT_TRUE(PathExists(dir + "/shared/c1/rootfs/bin/sh"));

  oci::Spec spec;
  spec.mounts.push_back({.destination = "/etc/resolv.conf", .type = "bind", .source = root_ + "/resolv.conf",
                         .options = {"rbind", "ro"}});
  spec.mounts.push_back({.destination = "/data", .type = "none", .source = root_ + "/rootfs/bin",
                         .options = {"bind"}});
  spec.mounts.push_back({.destination = "/proc", .type = "proc", .source = "proc", .options = {}});
  auto shared = (*sb)->ShareMounts("c1", spec);
  ASSERT_TRUE(shared.ok()) << shared.error().ToString();
  EXPECT_EQ(shared->mounts[0].source, "/run/cask/shared/c1/mounts/0");
  EXPECT_EQ(shared->mounts[1].source, "/run/cask/shared/c1/mounts/1");
  EXPECT_EQ(shared->mounts[2].source, "proc");
  auto rc = ReadFile(dir + "/shared/c1/mounts/0");
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, "nameserver 10.0.0.1\n");

  auto again = (*sb)->ShareMounts("c1", spec);
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists) << again.error().ToString();

  spec.mounts.push_back({.destination = "/x", .type = "bind", .source = root_ + "/missing", .options = {}});
  auto bad = (*sb)->ShareMounts("c1", spec);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("/missing"), std::string::npos) << bad.error().ToString();

  EXPECT_EQ((*sb)->ShareRootfs("c1", root_ + "/rootfs").error().code(), Code::kAlreadyExists);

  ASSERT_TRUE((*sb)->UnshareRootfs("c1").ok());
  EXPECT_FALSE(PathExists(dir + "/shared/c1"));

  ASSERT_TRUE((*sb)->ShareRootfs("c2", root_ + "/rootfs").ok());
  ASSERT_TRUE((*sb)->Destroy().ok());
  EXPECT_EQ(world_.destroy_rpcs.load(), 1);
  EXPECT_EQ(world_.stopped.load(), 1);
  EXPECT_FALSE(PathExists(dir));
  EXPECT_TRUE(PathExists(root_ + "/rootfs/bin/sh"));  // the source survives
  EXPECT_TRUE((*sb)->Destroy().ok());                  // idempotent
  EXPECT_FALSE((*sb)->ShareRootfs("c3", root_ + "/rootfs").ok());
}

TEST_P(SandboxTest, RefusesBadIdsAndDuplicates) {
  EXPECT_EQ(Sandbox::Create(Options("../x")).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(Sandbox::Create(Options("")).error().code(), Code::kInvalidArgument);
  auto a = Sandbox::Create(Options("dup"));
  ASSERT_TRUE(a.ok()) << a.error().ToString();
  auto b = Sandbox::Create(Options("dup"));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), Code::kAlreadyExists) << b.error().ToString();
  // The failed duplicate must not have damaged the first one.
  EXPECT_TRUE(PathExists(root_ + "/state/dup/shared"));
  auto bad_cid = (*a)->ShareRootfs("a/b", root_ + "/rootfs");
  EXPECT_EQ(bad_cid.error().code(), Code::kInvalidArgument);
}

TEST_P(SandboxTest, FailedStartLeavesNothing) {
  world_.start_fails = true;
  auto sb = Sandbox::Create(Options("sb2"));
  ASSERT_FALSE(sb.ok());
  EXPECT_EQ(sb.error().code(), Code::kNotFound);
  EXPECT_NE(sb.error().ToString().find("hypervisor.kernel"), std::string::npos) << sb.error().ToString();
  EXPECT_NE(sb.error().ToString().find("start the VM"), std::string::npos) << sb.error().ToString();
  EXPECT_FALSE(PathExists(root_ + "/state/sb2"));
  auto mounts = LiveMountPointsUnder(root_);
  ASSERT_TRUE(mounts.ok());
  EXPECT_TRUE(mounts->empty());
}

TEST_P(SandboxTest, VmDyingDuringBootReportsTheConsole) {
  world_.vm_dies_at_boot = true;
  auto sb = Sandbox::Create(Options("sb3"));
  ASSERT_FALSE(sb.ok());
  EXPECT_NE(sb.error().ToString().find("Kernel panic"), std::string::npos) << sb.error().ToString();
  EXPECT_EQ(world_.stopped.load(), 1);
  EXPECT_FALSE(PathExists(root_ + "/state/sb3"));
}

TEST_P(SandboxTest, FailedSetupUnwinds) {
  world_.setup_fails = true;
  auto sb = Sandbox::Create(Options("sb4"));
  ASSERT_FALSE(sb.ok());
  EXPECT_NE(sb.error().ToString().find("set up the guest"), std::string::npos) << sb.error().ToString();
  EXPECT_NE(sb.error().ToString().find("boom"), std::string::npos) << sb.error().ToString();
  EXPECT_EQ(world_.stopped.load(), 1);
  EXPECT_FALSE(PathExists(root_ + "/state/sb4"));
}

TEST_P(SandboxTest, CancelledBootUnwinds) {
  // The fake agent would answer at once: cancel before the first attempt
  // (as a ^C during boot does).
  SandboxOptions o = Options("sb5");
  o.cancelled = [] { return true; };
  auto sb = Sandbox::Create(std::move(o));
  ASSERT_FALSE(sb.ok());
  EXPECT_EQ(sb.error().code(), Code::kCancelled) << sb.error().ToString();
  EXPECT_FALSE(PathExists(root_ + "/state/sb5"));
}

TEST_P(SandboxTest, DestructorDestroys) {
  {
    auto sb = Sandbox::Create(Options("sb6"));
    ASSERT_TRUE(sb.ok()) << sb.error().ToString();
    ASSERT_TRUE((*sb)->ShareRootfs("c1", root_ + "/rootfs").ok());
  }
  EXPECT_EQ(world_.stopped.load(), 1);
  EXPECT_FALSE(PathExists(root_ + "/state/sb6"));
  EXPECT_TRUE(PathExists(root_ + "/rootfs/bin/sh"));
}

// A pod with a network namespace and a ready VM with a NIC: the VM's TAP
// (made here in a "holding" namespace) is adopted into the pod's namespace
// and the agent is asked to give the NIC the pod's MAC (current_mac); when
// that fails the pod boots cold, the ready VM stopped and its TAP deleted.
class WarmNetworkTest : public SandboxTest {
 protected:
  void SetUp() override {
    if (!kernel_mounts()) GTEST_SKIP() << "a ready VM's share is a real mount";
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "needs /dev/net/tun";
    SandboxTest::SetUp();
    if (IsSkipped()) return;
    auto pod = net::NewTestNetns();
    ASSERT_TRUE(pod.ok()) << pod.error().ToString();
    pod_ = std::move(*pod);
    auto holding = net::NewTestNetns();
    ASSERT_TRUE(holding.ok());
    holding_ = std::move(*holding);
    ASSERT_TRUE(net::RunInNetns(pod_.fd.get(), [&]() -> Status {
                  CASK_ASSIGN_OR_RETURN(net::NetlinkSocket nl, net::NetlinkSocket::Open());
                  CASK_TRY(net::AddVeth(nl, net::VethSpec{"eth0", "peer0", *net::ParseMac("02:42:0a:d5:00:02"), 0, -1}));
                  CASK_ASSIGN_OR_RETURN(auto links, net::ListLinks(nl));
                  for (const auto& l : links)
                    if (l.name == "eth0") return net::AddAddress(nl, net::Address{l.index, *net::ParseIp("10.213.0.2"), 24, 0});
                  return Error::Internal("no eth0");
                }).ok());
    UniqueFd tap;
    ASSERT_TRUE(net::RunInNetns(holding_.fd.get(), [&]() -> Status {
                  CASK_ASSIGN_OR_RETURN(tap, net::CreateTap("cpool-sbt"));
                  return Ok();
                }).ok());
    world_.ready_nic = hypervisor::ReadyNic{std::move(tap), UniqueFd(::dup(holding_.fd.get())), "cpool-sbt",
                                            "02:ca:5c:00:00:02"};
  }
  // Links of kind tun in `ns`.
  std::vector<std::string> Taps(int ns) {
    std::vector<std::string> out;
    EXPECT_TRUE(net::RunInNetns(ns, [&]() -> Status {
                  CASK_ASSIGN_OR_RETURN(net::NetlinkSocket nl, net::NetlinkSocket::Open());
                  CASK_ASSIGN_OR_RETURN(auto links, net::ListLinks(nl));
                  for (const auto& l : links)
                    if (l.kind == "tun") out.push_back(l.name);
                  return Ok();
                }).ok());
    return out;
  }
  net::TestNetns pod_, holding_;
};

TEST_P(WarmNetworkTest, AdoptsTheReadyNic) {
  auto o = Options("wn1");
  o.netns_path = pod_.path();
  auto sb = Sandbox::Create(std::move(o));
  ASSERT_TRUE(sb.ok()) << sb.error().ToString();
  EXPECT_EQ(world_.cold_starts.load(), 0);
  EXPECT_EQ(Taps(pod_.fd.get()), std::vector<std::string>{"tap0_cask"});
  EXPECT_TRUE(Taps(holding_.fd.get()).empty());
  {
    std::lock_guard l(world_.mu);
    ASSERT_EQ(world_.networks.size(), 1u);
    ASSERT_EQ(world_.networks[0].interfaces_size(), 1);
    EXPECT_EQ(world_.networks[0].interfaces(0).mac(), "02:42:0a:d5:00:02");
    EXPECT_EQ(world_.networks[0].interfaces(0).current_mac(), "02:ca:5c:00:00:02");
  }
  ASSERT_TRUE((*sb)->Destroy().ok());
  EXPECT_TRUE(Taps(pod_.fd.get()).empty());
}

TEST_P(WarmNetworkTest, AFailedMacChangeBootsCold) {
  world_.ready_mac_fails = true;
  auto o = Options("wn2");
  o.netns_path = pod_.path();
  auto sb = Sandbox::Create(std::move(o));
  ASSERT_TRUE(sb.ok()) << sb.error().ToString();
  EXPECT_EQ(world_.cold_starts.load(), 1);
  EXPECT_GE(world_.stopped.load(), 1);  // the ready VM
  // One TAP: the cold boot's, made in the pod's namespace.
  EXPECT_EQ(Taps(pod_.fd.get()), std::vector<std::string>{"tap0_cask"});
  {
    std::lock_guard l(world_.mu);
    ASSERT_EQ(world_.networks.size(), 2u);
    EXPECT_EQ(world_.networks[1].interfaces(0).current_mac(), "");
  }
  ASSERT_TRUE((*sb)->Destroy().ok());
  EXPECT_TRUE(Taps(pod_.fd.get()).empty());
}

INSTANTIATE_TEST_SUITE_P(Mounts, WarmNetworkTest, ::testing::Values(true), [](const auto&) { return "kernel"; });

INSTANTIATE_TEST_SUITE_P(Mounts, SandboxTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "Kernel" : "Fake"; });

}  // namespace
}  // namespace cask::sandbox
