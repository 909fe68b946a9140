#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lib/oci/parse.h"
#include "lib/oci/test_util_test.h"
#include "lib/oci/testdata_test.h"

namespace cask::oci {
namespace {

using testdata::kContainerdSpec;
using testdata::kRuncSpec;
using Json = nlohmann::json;

// Removes what the model does not keep (unknown fields, nulls), so that the
// JSON of a parsed document can be compared with the original.
Json WithoutUnmodelled(Json j) {
  j.erase("hooks");
  j["linux"].erase("uidMappings");  // null in the fixture
  // valueTwo 0 is omitted on output, as Go's omitempty does.
  j["linux"]["seccomp"]["syscalls"][2]["args"][0].erase("valueTwo");
  return j;
}

TEST(ToJson, RoundTripsRuncSpec) {
  auto s = ParseSpec(kRuncSpec);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  std::string out = ToJson(*s);
  EXPECT_EQ(Json::parse(out), Json::parse(kRuncSpec));
  auto again = ParseSpec(out);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(*again, *s);
}

TEST(ToJson, RoundTripsContainerdSpec) {
  auto s = ParseSpec(kContainerdSpec);
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  std::string out = ToJson(*s);
  EXPECT_EQ(Json::parse(out), WithoutUnmodelled(Json::parse(kContainerdSpec)));
  auto again = ParseSpec(out);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(*again, *s);
}

TEST(ToJson, RoundTripsEveryField) {
  // Starts from the containerd spec and sets every model field it lacks.
  Spec s = *ParseSpec(kContainerdSpec);
  s.domainname = "example.org";
  s.root->readonly = false;
  s.process->terminal = true;
  s.process->capabilities->inheritable = {"CAP_SYS_ADMIN"};
  s.process->capabilities->ambient = {"CAP_NET_RAW"};
  s.process->rlimits = {{"RLIMIT_CORE", 0, 0}, {"RLIMIT_NOFILE", 1048576, 1024}};
  s.process->oom_score_adj = 0;  // present-but-zero must survive
  s.linux->namespaces.push_back({"user", ""});
  s.linux->namespaces.push_back({"cgroup", "/proc/1/ns/cgroup"});
  s.linux->uid_mappings = {{0, 100000, 65536}};
  s.linux->gid_mappings = {{0, 100000, 65536}, {65536, 5, 1}};
  auto& mem = *s.linux->resources->memory;
  mem.reservation = 0;
  mem.kernel = -1;
  mem.kernel_tcp = 4096;
  mem.disable_oom_killer = true;
  auto& cpu = *s.linux->resources->cpu;
  cpu.realtime_runtime = 950000;
  cpu.realtime_period = 1000000;
  s.linux->resources->block_io = BlockIoResources{};  // present but empty
  s.linux->resources->devices[0].major = -1;
  s.linux->devices[0].file_mode.reset();
  s.linux->devices.push_back({"/dev/sda", "b", 8, 0, 0660, 0, 6});
  s.linux->seccomp->syscalls[2].args[0].value_two = 7;
  s.linux->seccomp->default_errno_ret.reset();
  ASSERT_TRUE(Validate(s).ok()) << Validate(s).error().ToString();

  auto again = ParseSpec(ToJson(s));
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(*again, s);
  EXPECT_EQ(again->process->oom_score_adj, 0);
  EXPECT_TRUE(again->linux->resources->block_io.has_value());
}

TEST(ToJson, ProcessRoundTrip) {
  Process p;
  p.terminal = true;
  p.console_size = ConsoleSize{25, 81};
  p.user = {1, 2, 022, {3, 4}};
  p.args = {"/bin/echo", "quote \" backslash \\ tab \t", "ünïcödé"};
  p.env = {"A=1"};
  p.cwd = "/tmp";
  p.no_new_privileges = true;
  p.apparmor_profile = "unconfined";
  auto r = ParseProcess(ToJson(p));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, p);
}

TEST(ToJson, LinuxResourcesRoundTrip) {
  LinuxResources r;
  r.memory = MemoryResources{};
  r.memory->limit = 1 << 30;
  r.memory->swappiness = 60;
  r.cpu = CpuResources{};
  r.cpu->shares = 1024;
  r.cpu->quota = 150000;
  r.cpu->period = 100000;
  r.cpu->cpus = "0";
  r.pids = PidsResources{100};
  r.hugepage_limits = {{"1GB", 0}};
  r.unified = {{"io.weight", "default 100"}};
  r.devices = {{true, "c", 5, 1, "rw"}};
  std::string json = ToJson(r);
  auto back = ParseLinuxResources(json);
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(*back, r);
  // Absent fields stay absent.
  EXPECT_EQ(Json::parse(json)["memory"].count("swap"), 0u);
  EXPECT_EQ(Json::parse(ToJson(LinuxResources{})), Json::object());
}

TEST(ToJson, InvalidUtf8DoesNotThrow) {
  Process p;
  p.args = {"\xff\xfe"};
  std::string out;
  EXPECT_NO_THROW(out = ToJson(p));
  EXPECT_NE(out.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
}

}  // namespace
}  // namespace cask::oci
