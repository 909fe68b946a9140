// The dead-shim cleanup decides liveness from the recorded shim identity
// and kills the VM's processes by identity: a live shim's VM is left alone,
// a dead or dying shim's VM goes, and an operator's `tail -f` of the console
// log (whose command line names the VM directory) survives.
#include "cmd/containerd-shim-cask-v2/vm_record.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/hypervisor/vm_leftovers.h"

namespace cask::shim {
namespace {

using hypervisor::IdentityOf;
using hypervisor::ProcessIdentity;

class VmRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-vmrec.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    bundle_ = tmp_ + "/bundle";
    vm_dir_ = tmp_ + "/state/sb";
    ASSERT_TRUE(MkdirAll(bundle_).ok());
    ASSERT_TRUE(MkdirAll(vm_dir_ + "/shared").ok());
    ASSERT_TRUE(WriteFile(vm_dir_ + "/console.log", "boot\n").ok());
  }
  void TearDown() override { (void)RemoveAll(tmp_); }

  void WriteRecord(const ProcessIdentity& shim) {
    ASSERT_TRUE(WriteFile(bundle_ + "/" + kVmRecordFile, "vm_dir " + vm_dir_ + "\nshim " + std::to_string(shim.pid) +
                                                             " " + std::to_string(shim.start_time) + "\n")
                    .ok());
  }
  // A stand-in QEMU recorded in the VM directory, and an operator's tail.
  void StartVmAndTail() {
    auto v = Spawn({"/bin/sh", "-c", "exec sleep 1000", vm_dir_ + "/qmp.sock"}, {});
    ASSERT_TRUE(v.ok());
    vmm_ = std::move(*v);
    hypervisor::HostProcesses hp;
    hp.vmm = *IdentityOf(vmm_.pid());
    ASSERT_TRUE(hypervisor::WriteHostProcesses(vm_dir_, hp).ok());
    auto t = Spawn({"/usr/bin/tail", "-f", vm_dir_ + "/console.log"}, {});
    ASSERT_TRUE(t.ok());
    tail_ = std::move(*t);
    // The tail must hold the log open before the cleanup removes the
    // directory; a tail that is still starting finds no file and exits.
    ASSERT_TRUE(WaitHoldsOpen(tail_.pid(), vm_dir_ + "/console.log"));
  }
  static bool WaitHoldsOpen(pid_t pid, const std::string& path) {
    const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
    for (int i = 0; i < 500; ++i) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(fds, ec)) {
        std::error_code lec;
        if (std::filesystem::read_symlink(e.path(), lec) == path) return true;
      }
      ::usleep(10000);
    }
    return false;
  }
  static bool Alive(ChildProcess& c) {
    auto r = c.TryWait();
    return r.ok() && !r->has_value();
  }

  std::string tmp_, bundle_, vm_dir_;
  ChildProcess vmm_, tail_;
};

TEST_F(VmRecordTest, WriteAndReadBack) {
  ASSERT_TRUE(WriteVmRecord(bundle_, vm_dir_).ok());
  auto r = ReadVmRecord(bundle_);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->vm_dir, vm_dir_);
  EXPECT_EQ(r->shim, *IdentityOf(::getpid()));
  RemoveVmRecord(bundle_);
  EXPECT_EQ(ReadVmRecord(bundle_).error().code(), Code::kNotFound);
}

TEST_F(VmRecordTest, MalformedRecords) {
  for (std::string bad : {"vm_dir relative\nshim 1 2\n", "vm_dir /x\n", "vm_dir /x\nshim 1\n", "vm_dir /x\nshim a 2\n",
                          "/old/format/path", "vm_dir /x\nshim 1 2\nextra\n"}) {
    ASSERT_TRUE(WriteFile(bundle_ + "/" + kVmRecordFile, bad).ok());
    auto r = ReadVmRecord(bundle_);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
    // And the cleanup refuses to act on it (the VM is left alone).
    EXPECT_FALSE(CleanupDeadVm(bundle_).ok()) << bad;
  }
}

TEST_F(VmRecordTest, ALiveShimsVmIsLeftAlone) {
  StartVmAndTail();
  WriteRecord(*IdentityOf(::getpid()));  // this test process plays the live shim
  ASSERT_TRUE(CleanupDeadVm(bundle_).ok());
  EXPECT_TRUE(Alive(vmm_));
  EXPECT_TRUE(PathExists(vm_dir_));
  EXPECT_TRUE(PathExists(bundle_ + "/" + kVmRecordFile));
}

TEST_F(VmRecordTest, ADeadShimsVmIsKilledByIdentityAndTailSurvives) {
  StartVmAndTail();
  auto shim = Spawn({"/bin/sleep", "1000"}, {});
  ASSERT_TRUE(shim.ok());
  ProcessIdentity sid = *IdentityOf(shim->pid());
  WriteRecord(sid);
  ASSERT_TRUE(shim->Signal(SIGKILL).ok());
  ASSERT_TRUE(shim->Wait().ok());  // gone
  ASSERT_TRUE(CleanupDeadVm(bundle_).ok());
  EXPECT_EQ(*vmm_.Wait(), 128 + SIGKILL);
  EXPECT_FALSE(PathExists(vm_dir_));
  EXPECT_FALSE(PathExists(bundle_ + "/" + kVmRecordFile));
  ::usleep(100000);
  EXPECT_TRUE(Alive(tail_)) << "the operator's tail -f of the console log was killed";
}

TEST_F(VmRecordTest, AShimThatIsExitingCountsAsDead) {
  // A killed shim that is not reaped yet (a zombie) may still look
  // connectable to a client racing its exit; its pidfd says it has exited.
  StartVmAndTail();
  auto shim = Spawn({"/bin/sleep", "1000"}, {});
  ASSERT_TRUE(shim.ok());
  WriteRecord(*IdentityOf(shim->pid()));
  ASSERT_TRUE(shim->Signal(SIGKILL).ok());
  ASSERT_TRUE(hypervisor::WaitExited(*IdentityOf(shim->pid()), std::chrono::milliseconds(5000)));
  ASSERT_TRUE(CleanupDeadVm(bundle_).ok());
  EXPECT_EQ(*vmm_.Wait(), 128 + SIGKILL);
  EXPECT_FALSE(PathExists(vm_dir_));
  ::usleep(100000);
  EXPECT_TRUE(Alive(tail_));
  (void)shim->Wait();
}

TEST_F(VmRecordTest, ARecycledShimPidIsDead) {
  // The recorded shim pid now names another process (this one, with a
  // different start time): the shim is dead.
  StartVmAndTail();
  ProcessIdentity me = *IdentityOf(::getpid());
  me.start_time += 1;
  WriteRecord(me);
  ASSERT_TRUE(CleanupDeadVm(bundle_).ok());
  EXPECT_EQ(*vmm_.Wait(), 128 + SIGKILL);
  ::usleep(100000);
  EXPECT_TRUE(Alive(tail_));
}

}  // namespace
}  // namespace cask::shim
