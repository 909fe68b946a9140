// HostCgroup: layout parsing and name rules everywhere; create, place a
// child at spawn, kill all and remove on the real cgroup hierarchies when
// running as root (v1 and the cgroup2 mount, whichever the host has).
#include "lib/hypervisor/host_cgroup.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lib/base/fs.h"
#include "lib/base/process.h"

namespace cask::hypervisor {
namespace {

using ::testing::HasSubstr;

constexpr const char* kHybridMountinfo =
    "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
    "29 25 0:26 / /sys/fs/cgroup rw shared:9 - tmpfs tmpfs rw,mode=755\n"
    "30 29 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
    "31 29 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
    "34 29 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct\n"
    "35 29 0:32 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory\n"
    "36 29 0:33 / /sys/fs/cgroup/pids rw shared:17 - cgroup cgroup rw,pids\n"
    "37 29 0:34 / /sys/fs/cgroup/cpuset rw shared:18 - cgroup cgroup rw,cpuset\n";

TEST(CgroupLayoutTest, HybridUsesTheV1HierarchiesAndKeepsTheUnifiedMount) {
  CgroupLayout l = ParseCgroupLayout(kHybridMountinfo, "");
  EXPECT_EQ(l.unified, "/sys/fs/cgroup/unified");
  EXPECT_FALSE(l.unified_controllers);
  EXPECT_EQ(l.memory, "/sys/fs/cgroup/memory");
  EXPECT_EQ(l.cpu, "/sys/fs/cgroup/cpu,cpuacct");  // cpuacct is not mistaken for cpu: the words are exact
  EXPECT_EQ(l.pids, "/sys/fs/cgroup/pids");
  EXPECT_TRUE(l.v1());
  EXPECT_FALSE(l.v2());
}

TEST(CgroupLayoutTest, PureV2WithControllers) {
  std::string info = "29 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
  CgroupLayout l = ParseCgroupLayout(info, "cpuset cpu io memory hugetlb pids rdma misc\n");
  EXPECT_EQ(l.unified, "/sys/fs/cgroup");
  EXPECT_TRUE(l.v2());
  EXPECT_FALSE(l.v1());
  // Without the pids controller on it, v2 is not usable for the pod.
  EXPECT_FALSE(ParseCgroupLayout(info, "cpu memory").usable());
}

TEST(CgroupLayoutTest, NoCgroupsIsUnusable) {
  CgroupLayout l = ParseCgroupLayout("22 1 0:5 / /proc rw - proc proc rw\n", "");
  EXPECT_FALSE(l.usable());
  auto r = HostCgroup::Create(l, "cask", "pod", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
}

TEST(CgroupNameTest, Rules) {
  EXPECT_TRUE(ValidateCgroupName("cask", "p").ok());
  EXPECT_TRUE(ValidateCgroupName("system.slice/cask-pods", "p").ok());
  for (const char* bad : {"", "a//b", "../x", "a/..", ".", "a b", "a\nb", "a/", "/a"}) {
    auto st = ValidateCgroupName(bad, "runtime.cgroup_parent");
    ASSERT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(st.error().ToString(), HasSubstr("runtime.cgroup_parent"));
  }
  // Create refuses a name with a slash (one level per pod).
  auto r = HostCgroup::Create(ParseCgroupLayout(kHybridMountinfo, ""), "cask", "a/b", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(CgroupNameTest, SelfCgroupPath) {
  const char* text = "9:name=systemd:/\n8:pids:/a\n4:memory:/process_api/x\n2:cpu,cpuacct:/c\n0::/u\n";
  EXPECT_EQ(*SelfCgroupPath(text, "memory"), "/process_api/x");
  EXPECT_EQ(*SelfCgroupPath(text, "cpu"), "/c");
  EXPECT_EQ(*SelfCgroupPath(text, "pids"), "/a");
  EXPECT_EQ(*SelfCgroupPath(text, ""), "/u");
  EXPECT_EQ(SelfCgroupPath(text, "blkio").error().code(), Code::kNotFound);
}

TEST(CgroupAdoptTest, RefusesPathsOutsideTheCgroupMounts) {
  for (const char* bad : {"/etc", "relative", "/sys/fs/cgroup/../../etc", "/sys/fs/cgroupx/a"}) {
    auto r = HostCgroup::Adopt({bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
  }
  auto gone = HostCgroup::Adopt({"/sys/fs/cgroup/pids/no-such-cask-cgroup"});
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->valid());
}

// The real hierarchies: needs root and a usable layout.
class RealCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    auto l = DetectCgroupLayout();
    ASSERT_TRUE(l.ok()) << l.error().ToString();
    layout_ = *l;
    if (!layout_.usable()) GTEST_SKIP() << "no usable cgroup hierarchy";
    parent_ = "cask-unit-" + std::to_string(::getpid());
    char tmpl[] = "/tmp/cask-cg-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
  }
  void TearDown() override {
    // Remove the per-test parent directories (relative to our own cgroups).
    auto self = ReadFile("/proc/self/cgroup");
    if (self.ok()) {
      std::vector<std::pair<std::string, std::string>> h = {{layout_.unified, ""}, {layout_.memory, "memory"},
                                                            {layout_.cpu, "cpu"}, {layout_.pids, "pids"}};
      for (const auto& [mount, ctrl] : h) {
        if (mount.empty()) continue;
        auto rel = SelfCgroupPath(*self, ctrl);
        if (rel.ok()) ::rmdir(JoinPath(JoinPath(mount, *rel), parent_).c_str());
      }
    }
    if (!tmp_.empty()) (void)RemoveAll(tmp_);
  }

  // Spawns a shell placed in `cg` at spawn, which records the cgroups of
  // its first command and then sleeps. The `cat` is a second member of the
  // cgroup until it is reaped: the shell waits for it (command
  // substitution) before the shell's own `echo` writes `out`, so once `out`
  // has content the shell is the only member left.
  ChildProcess SpawnInside(HostCgroup& cg, const std::string& out) {
    auto fds = cg.OpenProcsFiles();
    EXPECT_TRUE(fds.ok());
    SpawnOptions so;
    for (const auto& fd : *fds) so.cgroup_procs_fds.push_back(fd.get());
    auto child =
        Spawn({"/bin/sh", "-c", "c=$(cat /proc/self/cgroup); echo \"$c\" > " + out + "; exec sleep 1000"}, so);
    EXPECT_TRUE(child.ok()) << child.error().ToString();
    return std::move(*child);
  }

  CgroupLayout layout_;
  std::string parent_, tmp_;
};

void WaitForFile(const std::string& path) {
  // A hang guard, not a timing assumption: the shell writes at its first step.
  for (int i = 0; i < 6000 && (!PathExists(path) || ReadFile(path)->empty()); i++) ::usleep(10000);
}

TEST_F(RealCgroupTest, CreatePlaceAtSpawnLimitsKillAllRemove) {
  CgroupLimits limits;
  limits.memory_bytes = 512ull << 20;
  limits.cpu_quota_us = 150000;
  limits.pids_max = 64;
  auto cg = HostCgroup::Create(layout_, parent_, "pod1", limits);
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  auto dirs = cg->dirs();
  ASSERT_FALSE(dirs.empty());
  if (layout_.v1()) {
    // One directory per v1 hierarchy (plus the unified one when mounted).
    EXPECT_EQ(dirs.size(), 3u + (layout_.unified.empty() ? 0 : 1));
    for (const auto& d : dirs) {
      if (d.rfind(layout_.memory, 0) == 0) {
        EXPECT_EQ(*ReadFile(JoinPath(d, "memory.limit_in_bytes")), std::to_string(512ull << 20) + "\n");
      }
      if (d.rfind(layout_.pids, 0) == 0) {
        EXPECT_EQ(*ReadFile(JoinPath(d, "pids.max")), "64\n");
      }
      if (d.rfind(layout_.cpu, 0) == 0) {
        EXPECT_EQ(*ReadFile(JoinPath(d, "cpu.cfs_quota_us")), "150000\n");
      }
    }
  } else {
    EXPECT_EQ(*ReadFile(JoinPath(dirs[0], "memory.max")), std::to_string(512ull << 20) + "\n");
    EXPECT_EQ(*ReadFile(JoinPath(dirs[0], "pids.max")), "64\n");
    EXPECT_EQ(*ReadFile(JoinPath(dirs[0], "cpu.max")), "150000 100000\n");
  }

  // A second pod of the same name is refused while the first has members.
  std::string seen = tmp_ + "/cgroup-of-child";
  ChildProcess child = SpawnInside(*cg, seen);
  WaitForFile(seen);
  auto again = HostCgroup::Create(layout_, parent_, "pod1", {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists);

  // The shell's very first command already ran inside every directory.
  std::string text = *ReadFile(seen);
  for (const auto& d : dirs) {
    std::string leaf = "/" + parent_ + "/pod1";
    EXPECT_THAT(text, HasSubstr(leaf)) << d;
  }
  auto pids = cg->Pids();
  ASSERT_TRUE(pids.ok());
  EXPECT_EQ(*pids, std::vector<pid_t>{child.pid()});

  ASSERT_TRUE(cg->Remove(std::chrono::milliseconds(5000)).ok());
  EXPECT_FALSE(cg->valid());
  auto st = child.Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 128 + SIGKILL);
  for (const auto& d : dirs) EXPECT_FALSE(PathExists(d)) << d;
}

TEST_F(RealCgroupTest, CallerThatJoinedIsMovedBackNotKilled) {
  auto cg = HostCgroup::Create(layout_, parent_, "pod2", {});
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  std::string before = *ReadFile("/proc/self/cgroup");
  ASSERT_TRUE(cg->Add(::getpid()).ok());
  EXPECT_NE(*ReadFile("/proc/self/cgroup"), before);
  ChildProcess child = SpawnInside(*cg, tmp_ + "/c2");
  ASSERT_TRUE(cg->Remove(std::chrono::milliseconds(5000)).ok());
  EXPECT_EQ(*ReadFile("/proc/self/cgroup"), before);
  EXPECT_EQ(*child.Wait(), 128 + SIGKILL);
}

TEST_F(RealCgroupTest, DestructorKillsAndRemoves) {
  std::vector<std::string> dirs;
  ChildProcess child;
  {
    auto cg = HostCgroup::Create(layout_, parent_, "pod3", {});
    ASSERT_TRUE(cg.ok()) << cg.error().ToString();
    dirs = cg->dirs();
    child = SpawnInside(*cg, tmp_ + "/c3");
  }
  EXPECT_EQ(*child.Wait(), 128 + SIGKILL);
  for (const auto& d : dirs) EXPECT_FALSE(PathExists(d)) << d;
}

// The cgroup2 path on its own: the unified mount alone, without limits
// (on a hybrid host it carries no controllers), killed through cgroup.kill.
TEST_F(RealCgroupTest, UnifiedHierarchyAlone) {
  if (layout_.unified.empty()) GTEST_SKIP() << "no cgroup2 mount";
  CgroupLayout v2;
  v2.unified = layout_.unified;
  v2.unified_controllers = true;  // usable(): take the v2 branch
  CgroupLimits none;
  auto cg = HostCgroup::Create(v2, parent_, "pod4", none);
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  ASSERT_EQ(cg->dirs().size(), 1u);
  ChildProcess a = SpawnInside(*cg, tmp_ + "/c4a");
  ChildProcess b = SpawnInside(*cg, tmp_ + "/c4b");
  ASSERT_TRUE(cg->KillAll(std::chrono::milliseconds(5000)).ok());
  EXPECT_EQ(*a.Wait(), 128 + SIGKILL);
  EXPECT_EQ(*b.Wait(), 128 + SIGKILL);
  ASSERT_TRUE(cg->Remove(std::chrono::milliseconds(5000)).ok());
}

}  // namespace
}  // namespace cask::hypervisor
