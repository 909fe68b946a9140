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
