#include "cmd/cask-runtime/check.h"

#include <gtest/gtest.h>

namespace cask::runtime {
namespace {

CheckItem::Result ResultOf(const std::vector<CheckItem>& items, const std::string& name) {
  for (const auto& i : items)
    if (i.name == name) return i.result;
  ADD_FAILURE() << "no item " << name;
  return CheckItem::Result::kFail;
}

TEST(CheckTest, MissingFilesFailAndNameTheKey) {
  config::Config c;
  c.hypervisor.path = "/nonexistent/qemu";
  c.hypervisor.kernel = "/nonexistent/vmlinux";
  c.source = "test";
  auto items = RunHostChecks(c, hypervisor::HostProbe{});
  EXPECT_EQ(ResultOf(items, "qemu"), CheckItem::Result::kFail);
  EXPECT_EQ(ResultOf(items, "kernel"), CheckItem::Result::kFail);
  EXPECT_FALSE(AllRequiredPass(items));
  std::string table = RenderChecks(items);
  EXPECT_NE(table.find("hypervisor.kernel = /nonexistent/vmlinux"), std::string::npos) << table;
  EXPECT_NE(table.find("FAIL"), std::string::npos) << table;
}

TEST(CheckTest, NoKvmIsOnlyInformationalUnlessRequired) {
  config::Config c;
  auto items = RunHostChecks(c, hypervisor::HostProbe{});
  EXPECT_EQ(ResultOf(items, "kvm"), CheckItem::Result::kInfo);
  EXPECT_EQ(ResultOf(items, "vhost-vsock"), CheckItem::Result::kInfo);
  std::string table = RenderChecks(items);
  EXPECT_NE(table.find("accel = tcg"), std::string::npos) << table;
  EXPECT_NE(table.find("agent channel = serial"), std::string::npos) << table;

  c.hypervisor.accel = config::Accel::kKvm;
  c.agent.channel = config::AgentChannel::kVsock;
  items = RunHostChecks(c, hypervisor::HostProbe{});
  EXPECT_EQ(ResultOf(items, "kvm"), CheckItem::Result::kFail);
  EXPECT_EQ(ResultOf(items, "vhost-vsock"), CheckItem::Result::kFail);
  EXPECT_FALSE(AllRequiredPass(items));
}

TEST(CheckTest, CgroupItem) {
  config::Config c;
  hypervisor::CgroupLayout v1;
  v1.memory = "/sys/fs/cgroup/memory";
  v1.cpu = "/sys/fs/cgroup/cpu";
  v1.pids = "/sys/fs/cgroup/pids";
  v1.unified = "/sys/fs/cgroup/unified";
  CheckItem it = CgroupItem(c, v1, true);
  EXPECT_EQ(it.result, CheckItem::Result::kOk);
  EXPECT_NE(it.detail.find("cgroup v1"), std::string::npos) << it.detail;
  EXPECT_NE(it.detail.find("memory limit 768 MiB"), std::string::npos) << it.detail;
  EXPECT_EQ(CgroupItem(c, v1, false).result, CheckItem::Result::kFail);

  hypervisor::CgroupLayout v2;
  v2.unified = "/sys/fs/cgroup";
  v2.unified_controllers = true;
  EXPECT_NE(CgroupItem(c, v2, true).detail.find("cgroup v2"), std::string::npos);

  hypervisor::CgroupLayout none;
  it = CgroupItem(c, none, true);
  EXPECT_EQ(it.result, CheckItem::Result::kFail);
  EXPECT_TRUE(it.required);
  c.runtime.sandbox_cgroup = false;
  it = CgroupItem(c, none, true);
  EXPECT_EQ(it.result, CheckItem::Result::kInfo);
  EXPECT_FALSE(it.required);
}

TEST(CheckTest, RunasItem) {
  config::Config c;
  c.hypervisor.runas = "none";
  EXPECT_EQ(RunasItem(c).result, CheckItem::Result::kInfo);
  c.hypervisor.runas = "no-such-user-for-cask";
  CheckItem it = RunasItem(c);
  EXPECT_EQ(it.result, CheckItem::Result::kFail);
  EXPECT_TRUE(it.required);
  c.hypervisor.runas = "1000:1000";
  EXPECT_EQ(RunasItem(c).result, CheckItem::Result::kOk);
}

TEST(CheckTest, RenderAlignsColumns) {
  std::vector<CheckItem> items = {{"a", true, CheckItem::Result::kOk, "fine"},
                                  {"longer-name", false, CheckItem::Result::kFail, "meh"}};
  EXPECT_EQ(RenderChecks(items),
            "CHECK        RESULT  DETAIL\n"
            "a            ok      fine\n"
            "longer-name  warn    meh\n");
}

}  // namespace
}  // namespace cask::runtime
