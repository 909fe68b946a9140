#include "lib/container/cgroup.h"

#include <gtest/gtest.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/base/fs.h"

namespace cask::container {
namespace {

TEST(CgroupConvertTest, CpuSharesToWeight) {
  EXPECT_EQ(CpuSharesToWeight(0), 0u);  // unset
  EXPECT_EQ(CpuSharesToWeight(2), 1u);
  EXPECT_EQ(CpuSharesToWeight(1024), 39u);
  EXPECT_EQ(CpuSharesToWeight(262144), 10000u);
  EXPECT_EQ(CpuSharesToWeight(1), 1u);          // clamped, no underflow
  EXPECT_EQ(CpuSharesToWeight(1000000), 10000u);
}

TEST(CgroupConvertTest, BlkioWeight) {
  EXPECT_EQ(BlkioWeightToIoWeight(10), 1u);
  EXPECT_EQ(BlkioWeightToIoWeight(500), 4950u);
  EXPECT_EQ(BlkioWeightToIoWeight(1000), 10000u);
}

TEST(CgroupConvertTest, Swap) {
  EXPECT_EQ(*SwapToCgroupV2(0, std::nullopt), std::nullopt);
  EXPECT_EQ(*SwapToCgroupV2(-1, 100), std::optional<int64_t>(-1));
  EXPECT_EQ(*SwapToCgroupV2(0, -1), std::optional<int64_t>(-1));
  EXPECT_EQ(*SwapToCgroupV2(300, 100), std::optional<int64_t>(200));
  EXPECT_FALSE(SwapToCgroupV2(50, 100).ok());
  EXPECT_FALSE(SwapToCgroupV2(300, std::nullopt).ok());
}

TEST(CgroupConvertTest, ResourceWrites) {
  oci::LinuxResources r;
  r.memory = oci::MemoryResources{};
  r.memory->limit = 64 << 20;
  r.memory->swap = 128 << 20;
  r.cpu = oci::CpuResources{};
  r.cpu->shares = 1024;
  r.cpu->quota = 50000;
  r.cpu->period = 100000;
  r.pids = oci::PidsResources{100};
  r.block_io = oci::BlockIoResources{500};
  r.unified["memory.high"] = "1000000";
  auto w = ResourceWrites(r);
  ASSERT_TRUE(w.ok()) << w.error().ToString();
  std::map<std::string, std::string> m;
  for (const auto& x : *w) m[x.file] = x.value;
  EXPECT_EQ(m["memory.max"], "67108864");
  EXPECT_EQ(m["memory.swap.max"], "67108864");
  EXPECT_EQ(m["cpu.weight"], "39");
  EXPECT_EQ(m["cpu.max"], "50000 100000");
  EXPECT_EQ(m["pids.max"], "100");
  EXPECT_EQ(m["io.weight"], "default 4950");
  EXPECT_EQ(m["memory.high"], "1000000");

  oci::LinuxResources unlimited;
  unlimited.memory = oci::MemoryResources{};
  unlimited.memory->limit = -1;
  unlimited.cpu = oci::CpuResources{};
  unlimited.cpu->quota = -1;
  unlimited.pids = oci::PidsResources{0};
  auto u = ResourceWrites(unlimited);
  ASSERT_TRUE(u.ok());
  m.clear();
  for (const auto& x : *u) m[x.file] = x.value;
  EXPECT_EQ(m["memory.max"], "max");
  EXPECT_EQ(m["memory.swap.max"], "max");
  EXPECT_EQ(m["cpu.max"], "max 100000");
  EXPECT_EQ(m["pids.max"], "max");
}

TEST(CgroupConvertTest, BadUnifiedKeysAndRealtime) {
  oci::LinuxResources r;
  r.unified["../../etc/passwd"] = "x";
  EXPECT_FALSE(ResourceWrites(r).ok());
  r.unified.clear();
  r.unified["cgroup.procs"] = "1";
  EXPECT_FALSE(ResourceWrites(r).ok());
  r.unified.clear();
  r.cpu = oci::CpuResources{};
  r.cpu->realtime_runtime = 1000;
  EXPECT_FALSE(ResourceWrites(r).ok());
}

TEST(CgroupParseTest, Files) {
  auto flat = ParseFlatKeyed("usage_usec 123\nuser_usec 100\nsystem_usec 23\nbad line here\n");
  EXPECT_EQ(flat["usage_usec"], 123u);
  EXPECT_EQ(flat["system_usec"], 23u);
  EXPECT_EQ(flat.count("bad"), 0u);
  EXPECT_EQ(ParseMaxValue("max\n"), 0u);
  EXPECT_EQ(ParseMaxValue("4096\n"), 4096u);
  auto io = ParseIoStat("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n253:1 rbytes=10\n");
  ASSERT_EQ(io.size(), 2u);
  EXPECT_EQ(io[0].major, 8u);
  EXPECT_EQ(io[0].wbytes, 2u);
  EXPECT_EQ(io[0].wios, 4u);
  EXPECT_EQ(io[1].minor, 1u);
  EXPECT_EQ(io[1].rbytes, 10u);
}

// A live cgroup2 hierarchy without controllers is enough for the core
// files (procs, freeze, kill, events). The host mounts one at
// /sys/fs/cgroup/unified (hybrid); a pure v2 host at /sys/fs/cgroup.
std::string Cgroup2Mount() {
  for (const char* p : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs st {};
    if (statfs(p, &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC) return p;
  }
  return "";
}

TEST(CgroupLiveTest, ProcsFreezeKillRemove) {
  std::string mnt = Cgroup2Mount();
  if (geteuid() != 0 || mnt.empty()) GTEST_SKIP() << "needs root and a cgroup2 mount";
  std::string root = mnt + "/cask-test-" + std::to_string(getpid());
  auto cg = Cgroup::Create(root, "c1");
  ASSERT_TRUE(cg.ok()) << cg.error().ToString();
  EXPECT_FALSE(Cgroup::Create(root, "c1").ok());  // already exists
  EXPECT_FALSE(Cgroup::Create(root, "../x").ok());

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    for (;;) pause();
  }
  ASSERT_TRUE(cg->AddProcess(child).ok());
  auto procs = cg->Procs();
  ASSERT_TRUE(procs.ok());
  ASSERT_EQ(procs->size(), 1u);
  EXPECT_EQ((*procs)[0], child);

  ASSERT_TRUE(cg->Freeze(true, std::chrono::seconds(5)).ok());
  EXPECT_NE(ReadFile(cg->File("cgroup.events"))->find("frozen 1"), std::string::npos);
  ASSERT_TRUE(cg->Freeze(false, std::chrono::seconds(5)).ok());

  auto stats = cg->Stats();
  ASSERT_TRUE(stats.ok()) << stats.error().ToString();
  EXPECT_TRUE(stats->cpu_stat.count("usage_usec"));

  // Applying a limit whose controller is missing names it.
  oci::LinuxResources r;
  r.pids = oci::PidsResources{10};
  Status applied = cg->Apply(r);
  if (!PathExists(cg->File("pids.max"))) {
    ASSERT_FALSE(applied.ok());
    EXPECT_NE(applied.error().ToString().find("pids.max"), std::string::npos);
  }

  ASSERT_TRUE(cg->Remove(std::chrono::seconds(2)).ok());
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
  EXPECT_FALSE(PathExists(cg->path()));
  EXPECT_TRUE(cg->Remove(std::chrono::seconds(2)).ok());  // idempotent
  rmdir(root.c_str());
}

}  // namespace
}  // namespace cask::container
