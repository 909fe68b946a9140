// KillVmLeftovers finds a dead owner's VM processes by identity (the
// recorded pid + start time, the pod's cgroup), never by command line: a
// process that merely mentions the VM's directory (an operator's `tail -f`
// of the console log) survives.
#include "lib/hypervisor/vm_leftovers.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/hypervisor/host_cgroup.h"

namespace cask::hypervisor {
namespace {

TEST(HostProcessesTest, RoundTrip) {
  HostProcesses p;
  p.vmm = ProcessIdentity{123, 456};
  p.virtiofsd = ProcessIdentity{124, 457};
  p.cgroup_dirs = {"/sys/fs/cgroup/unified/cask/sb", "/sys/fs/cgroup/memory/cask/sb"};
  auto back = ParseHostProcesses(FormatHostProcesses(p));
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(*back, p);
  EXPECT_TRUE(ParseHostProcesses("").ok());
}

TEST(HostProcessesTest, RejectsBadRecords) {
  for (const char* bad : {"vmm 12\n", "vmm x 1\n", "vmm 0 1\n", "vmm 99999999 1\n", "cgroup relative\n", "what 1 2\n",
                          "vmm 1 123456789012345678901234\n"}) {
    auto r = ParseHostProcesses(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ParseHostProcesses(std::string(kMaxHostProcessesBytes + 1, '\n')).ok());
}

class LeftoversTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-leftovers.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(WriteFile(dir_ + "/console.log", "boot\n").ok());
  }
  void TearDown() override { (void)RemoveAll(dir_); }

  // The operator's `tail -f` of the console log: its command line names
  // the VM directory, but it is not the VM's.
  ChildProcess Tail() {
    auto t = Spawn({"/usr/bin/tail", "-f", dir_ + "/console.log"}, {});
    EXPECT_TRUE(t.ok());
    return std::move(*t);
  }
  // A stand-in VMM whose argv mentions the directory like QEMU's does.
  ChildProcess Vmm() {
    auto v = Spawn({"/bin/sh", "-c", "exec sleep 1000", dir_ + "/qmp.sock"}, {});
    EXPECT_TRUE(v.ok());
    return std::move(*v);
  }
  static bool Alive(ChildProcess& c) {
    auto r = c.TryWait();
    return r.ok() && !r->has_value();
  }

  std::string dir_;
};

TEST_F(LeftoversTest, KillsTheRecordedProcessAndLeavesTailAlone) {
  ChildProcess tail = Tail();
  ChildProcess vmm = Vmm();
  HostProcesses hp;
  hp.vmm = *IdentityOf(vmm.pid());
  ASSERT_TRUE(WriteHostProcesses(dir_, hp).ok());
  ASSERT_TRUE(KillVmLeftovers(dir_, std::chrono::milliseconds(5000)).ok());
  EXPECT_EQ(*vmm.Wait(), 128 + SIGKILL);
  ::usleep(100000);
  EXPECT_TRUE(Alive(tail)) << "tail -f of the console log was killed";
}

TEST_F(LeftoversTest, AReusedPidIsLeftAlone) {
  // The record names the tail's pid, with another start time: as if the VMM
  // had exited and its pid been reused by the operator's tail.
  ChildProcess tail = Tail();
  HostProcesses hp;
  hp.vmm = *IdentityOf(tail.pid());
  hp.vmm->start_time -= 1;
  ASSERT_TRUE(WriteHostProcesses(dir_, hp).ok());
  ASSERT_TRUE(KillVmLeftovers(dir_, std::chrono::milliseconds(1000)).ok());
  ::usleep(100000);
  EXPECT_TRUE(Alive(tail));
}

TEST_F(LeftoversTest, NoRecordIsNothingToDo) {
  EXPECT_TRUE(KillVmLeftovers(dir_, std::chrono::milliseconds(100)).ok());
  EXPECT_TRUE(KillVmLeftovers(dir_ + "/absent", std::chrono::milliseconds(100)).ok());
}

TEST_F(LeftoversTest, KillsTheWholeCgroup) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto layout = DetectCgroupLayout();
  ASSERT_TRUE(layout.ok());
  if (!layout->usable()) GTEST_SKIP() << "no usable cgroup hierarchy";
  std::string parent = "cask-leftovers-" + std::to_string(::getpid());
  auto cg = HostCgroup::Create(*layout, parent, "pod", {});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  auto fds = cg->OpenProcsFiles();
  ASSERT_TRUE(fds.ok());
  SpawnOptions so;
  for (const auto& fd : *fds) so.cgroup_procs_fds.push_back(fd.get());
  // An unrecorded member (a helper QEMU forked, say) goes with the cgroup.
  auto member = Spawn({"/bin/sleep", "1000"}, so);
  ASSERT_TRUE(member.ok());
  ChildProcess tail = Tail();
  HostProcesses hp;
  hp.cgroup_dirs = cg->dirs();
  ASSERT_TRUE(WriteHostProcesses(dir_, hp).ok());
  std::vector<std::string> dirs = cg->dirs();
  // `cg` stands for the dead owner's handle; the cleanup works from the
  // record alone.
  ASSERT_TRUE(KillVmLeftovers(dir_, std::chrono::milliseconds(5000)).ok());
  EXPECT_EQ(*member->Wait(), 128 + SIGKILL);
  for (const auto& d : dirs) EXPECT_FALSE(PathExists(d)) << d;
  EXPECT_TRUE(Alive(tail));
  for (const auto& d : dirs) ::rmdir(Dirname(d).c_str());  // the test's parents
}

}  // namespace
}  // namespace cask::hypervisor
