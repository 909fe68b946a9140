#include "lib/oci/parse.h"

#include <string>

#include <gtest/gtest.h>

#include "lib/oci/test_util_test.h"
#include "lib/oci/testdata_test.h"

namespace cask::oci {
namespace {

using testing::FailsWith;
using testing::With;
using testing::Without;
using testdata::kContainerdSpec;
using testdata::kRuncSpec;

TEST(ParseSpec, RuncSpec) {
  auto r = ParseSpec(kRuncSpec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const Spec& s = *r;
  EXPECT_EQ(s.oci_version, "1.0.2-dev");
  ASSERT_TRUE(s.process);
  EXPECT_TRUE(s.process->terminal);
  EXPECT_EQ(s.process->args, std::vector<std::string>{"sh"});
  EXPECT_EQ(s.process->env.size(), 2u);
  EXPECT_EQ(s.process->cwd, "/");
  ASSERT_TRUE(s.process->capabilities);
  EXPECT_EQ(s.process->capabilities->bounding.size(), 3u);
  EXPECT_TRUE(s.process->capabilities->inheritable.empty());
  ASSERT_EQ(s.process->rlimits.size(), 1u);
  EXPECT_EQ(s.process->rlimits[0].type, "RLIMIT_NOFILE");
  EXPECT_EQ(s.process->rlimits[0].hard, 1024u);
  EXPECT_TRUE(s.process->no_new_privileges);
  EXPECT_FALSE(s.process->oom_score_adj);
  ASSERT_TRUE(s.root);
  EXPECT_EQ(s.root->path, "rootfs");
  EXPECT_TRUE(s.root->readonly);
  EXPECT_EQ(s.hostname, "runc");
  ASSERT_EQ(s.mounts.size(), 7u);
  EXPECT_EQ(s.mounts[2].destination, "/dev/pts");
  EXPECT_EQ(s.mounts[2].options.size(), 6u);
  EXPECT_TRUE(s.mounts[0].options.empty());
  ASSERT_TRUE(s.linux);
  ASSERT_EQ(s.linux->namespaces.size(), 5u);
  EXPECT_EQ(s.linux->namespaces[1].type, "network");
  ASSERT_TRUE(s.linux->resources);
  ASSERT_EQ(s.linux->resources->devices.size(), 1u);
  EXPECT_FALSE(s.linux->resources->devices[0].allow);
  EXPECT_EQ(s.linux->resources->devices[0].access, "rwm");
  EXPECT_FALSE(s.linux->resources->memory);
  EXPECT_EQ(s.linux->masked_paths.size(), 10u);
  EXPECT_EQ(s.linux->readonly_paths.size(), 5u);
  EXPECT_FALSE(s.linux->seccomp);
}

TEST(ParseSpec, ContainerdSpec) {
  auto r = ParseSpec(kContainerdSpec);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  const Spec& s = *r;
  EXPECT_EQ(s.oci_version, "1.1.0");
  EXPECT_EQ(s.annotations.size(), 4u);
  EXPECT_EQ(s.annotations.at("io.kubernetes.cri.sandbox-id"), "abc");
  const Process& p = *s.process;
  EXPECT_EQ(p.user.uid, 65534u);
  EXPECT_EQ(p.user.umask, 18u);
  EXPECT_EQ(p.user.additional_gids, (std::vector<uint32_t>{65534, 10}));
  EXPECT_EQ(p.oom_score_adj, -998);
  EXPECT_EQ(p.apparmor_profile, "cri-containerd.apparmor.d");
  ASSERT_TRUE(p.console_size);
  EXPECT_EQ(p.console_size->height, 24u);
  EXPECT_EQ(p.console_size->width, 80u);
  EXPECT_FALSE(p.terminal);
  EXPECT_EQ(s.mounts[2].type, "bind");
  const Linux& l = *s.linux;
  EXPECT_TRUE(l.uid_mappings.empty());  // null = absent
  EXPECT_EQ(l.sysctl.at("net.ipv4.ip_unprivileged_port_start"), "0");
  EXPECT_EQ(l.cgroups_path, "/kubepods/besteffort/pod1234/abc");
  EXPECT_EQ(l.namespaces[1].path, "/proc/4242/ns/ipc");
  const LinuxResources& res = *l.resources;
  ASSERT_EQ(res.devices.size(), 2u);
  EXPECT_EQ(res.devices[1].type, "c");
  EXPECT_EQ(res.devices[1].major, 1);
  EXPECT_EQ(res.devices[1].minor, 3);
  EXPECT_FALSE(res.devices[0].major);
  EXPECT_EQ(res.memory->limit, 134217728);
  EXPECT_EQ(res.memory->swap, 134217728);
  EXPECT_EQ(res.memory->swappiness, 0u);
  EXPECT_EQ(res.memory->disable_oom_killer, false);
  EXPECT_FALSE(res.memory->reservation);
  EXPECT_EQ(res.cpu->shares, 102u);
  EXPECT_EQ(res.cpu->quota, 50000);
  EXPECT_EQ(res.cpu->period, 100000u);
  EXPECT_EQ(res.cpu->cpus, "0-1");
  EXPECT_EQ(res.pids->limit, 1024);
  EXPECT_EQ(res.block_io->weight, 500);
  ASSERT_EQ(res.hugepage_limits.size(), 1u);
  EXPECT_EQ(res.hugepage_limits[0].page_size, "2MB");
  EXPECT_EQ(res.unified.at("memory.high"), "100000000");
  ASSERT_EQ(l.devices.size(), 1u);
  EXPECT_EQ(l.devices[0].file_mode, 0666u);
  EXPECT_EQ(l.devices[0].major, 10);
  const Seccomp& sc = *l.seccomp;
  EXPECT_EQ(sc.default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(sc.default_errno_ret, 1u);
  EXPECT_EQ(sc.architectures.size(), 3u);
  ASSERT_EQ(sc.syscalls.size(), 4u);
  EXPECT_EQ(sc.syscalls[0].names.size(), 3u);
  EXPECT_EQ(sc.syscalls[2].args[0].value, 2114060288u);
  EXPECT_EQ(sc.syscalls[2].args[0].op, "SCMP_CMP_MASKED_EQ");
  EXPECT_EQ(sc.syscalls[3].errno_ret, 38u);
  EXPECT_EQ(l.rootfs_propagation, "rslave");
  EXPECT_EQ(l.mount_label, "system_u:object_r:container_file_t:s0");
}

TEST(ParseSpec, UnknownFieldsAndNullsAreIgnored) {
  std::string j = With(kRuncSpec, "/vendorExtension", {{"deep", {1, 2, {{"x", nullptr}}}}});
  j = With(j.c_str(), "/process/commandLine", "ignored");
  j = With(j.c_str(), "/linux/intelRdt", {{"closID", "x"}});
  j = With(j.c_str(), "/process/oomScoreAdj", nullptr);
  j = With(j.c_str(), "/linux/seccomp", nullptr);
  auto r = ParseSpec(j);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(r->process->oom_score_adj);
  EXPECT_FALSE(r->linux->seccomp);
}

TEST(ParseSpec, MinimalSpec) {
  auto r = ParseSpec(R"({"ociVersion": "1.0.0"})");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(r->process);
  EXPECT_FALSE(r->root);
  EXPECT_FALSE(r->linux);
}

TEST(ParseSpec, MalformedJson) {
  for (const char* text : {"", "   ", "{", "{\"ociVersion\": }", "[1,", "not json", "{\"a\":1}}",
                           "{\"ociVersion\": \"1.0.0\",}", "\"\xff\xfe\""}) {
    auto r = ParseSpec(text);
    EXPECT_TRUE(FailsWith(r, "invalid JSON")) << "input: " << text;
  }
  auto r = ParseSpec("{\n  \"ociVersion\": \"1.0.0\",\n  \"process\": {\n    \"args\": [\"sh\" \"x\"]\n}}");
  ASSERT_TRUE(FailsWith(r, "line 4"));
}

TEST(ParseSpec, ErrorsDoNotEchoInvalidUtf8) {
  auto r = ParseSpec("{\"ociVersion\": \"\xff\xfe\"}");
  ASSERT_TRUE(FailsWith(r, "invalid JSON"));
  EXPECT_EQ(r.error().ToString().find('\xff'), std::string::npos) << r.error().ToString();
}

TEST(ParseSpec, DeepNestingIsRejectedCheaply) {
  std::string deep(1000000, '[');
  EXPECT_TRUE(FailsWith(ParseSpec(deep), "nested deeper than 64"));
  std::string deep_obj;
  for (int i = 0; i < 100; ++i) deep_obj += "{\"a\":";
  EXPECT_TRUE(FailsWith(ParseSpec(deep_obj), "nested deeper than 64"));
  // Brackets inside strings do not count.
  std::string s = With(kRuncSpec, "/annotations", {{"x", std::string(200, '[')}});
  EXPECT_TRUE(ParseSpec(s).ok());
}

struct TypeCase {
  std::string ptr;
  nlohmann::json value;
  std::string error;
};

TEST(ParseSpec, WrongTypesNameTheJsonPath) {
  const std::vector<TypeCase> cases = {
      {"/ociVersion", 1, "ociVersion: expected a string, got an integer"},
      {"/process", nlohmann::json::array(), "process: expected an object, got an array"},
      {"/process/terminal", "yes", "process.terminal: expected a boolean, got a string"},
      {"/process/args", "sh", "process.args: expected an array, got a string"},
      {"/process/args", {"sh", "-c", 5}, "process.args[2]: expected a string, got an integer"},
      {"/process/args", {"sh", nullptr}, "process.args[1]: expected a value, got null"},
      {"/process/env/1", true, "process.env[1]: expected a string, got a boolean"},
      {"/process/user/uid", -1, "process.user.uid: expected an integer between 0 and 4294967295, got -1"},
      {"/process/user/gid", 4294967296ULL, "process.user.gid: expected an integer between 0 and 4294967295, got 4294967296"},
      {"/process/user/additionalGids", {1, "2"}, "process.user.additionalGids[1]: expected an integer, got a string"},
      {"/process/user/umask", 1.5, "process.user.umask: expected an integer, got a fractional number"},
      {"/process/consoleSize", {{"height", "24"}}, "process.consoleSize.height: expected an integer, got a string"},
      {"/process/capabilities/bounding/1", 7, "process.capabilities.bounding[1]: expected a string"},
      {"/process/rlimits/0/hard", 1.5, "process.rlimits[0].hard: expected an integer, got a fractional number"},
      {"/process/rlimits/0", "RLIMIT_NOFILE", "process.rlimits[0]: expected an object, got a string"},
      {"/process/oomScoreAdj", 2147483648LL, "process.oomScoreAdj: expected an integer between"},
      {"/process/noNewPrivileges", 1, "process.noNewPrivileges: expected a boolean, got an integer"},
      {"/root", "rootfs", "root: expected an object, got a string"},
      {"/root/readonly", "true", "root.readonly: expected a boolean"},
      {"/hostname", nlohmann::json::object(), "hostname: expected a string, got an object"},
      {"/mounts", nlohmann::json::object(), "mounts: expected an array, got an object"},
      {"/mounts/1/options", "nosuid", "mounts[1].options: expected an array, got a string"},
      {"/mounts/3/destination", false, "mounts[3].destination: expected a string, got a boolean"},
      {"/annotations", {{"a", "b"}, {"c", 1}}, "annotations[\"c\"]: expected a string, got an integer"},
      {"/annotations", {"a"}, "annotations: expected an object, got an array"},
      {"/linux", 3, "linux: expected an object, got an integer"},
      {"/linux/namespaces", nlohmann::json::object(), "linux.namespaces: expected an array, got an object"},
      {"/linux/namespaces/2/type", 1, "linux.namespaces[2].type: expected a string"},
      {"/linux/uidMappings", {{{"containerID", 0}, {"hostID", "1000"}, {"size", 1}}}, "linux.uidMappings[0].hostID: expected an integer, got a string"},
      {"/linux/resources/memory", {{"limit", "1G"}}, "linux.resources.memory.limit: expected an integer, got a string"},
      {"/linux/resources/memory", {{"limit", 9223372036854775808ULL}}, "linux.resources.memory.limit: expected an integer between -9223372036854775808 and 9223372036854775807, got 9223372036854775808"},
      {"/linux/resources/memory", {{"swappiness", -1}}, "linux.resources.memory.swappiness: expected an integer between 0 and"},
      {"/linux/resources/memory", {{"disableOOMKiller", "no"}}, "linux.resources.memory.disableOOMKiller: expected a boolean"},
      {"/linux/resources/cpu", {{"shares", 1.0}}, "linux.resources.cpu.shares: expected an integer, got a fractional number"},
      {"/linux/resources/cpu", {{"cpus", 3}}, "linux.resources.cpu.cpus: expected a string"},
      {"/linux/resources/pids", {{"limit", "max"}}, "linux.resources.pids.limit: expected an integer"},
      {"/linux/resources/blockIO", {{"weight", 70000}}, "linux.resources.blockIO.weight: expected an integer between 0 and 65535, got 70000"},
      {"/linux/resources/hugepageLimits", {{{"pageSize", 2}}}, "linux.resources.hugepageLimits[0].pageSize: expected a string"},
      {"/linux/resources/unified", {{"memory.max", 5}}, "linux.resources.unified[\"memory.max\"]: expected a string, got an integer"},
      {"/linux/resources/devices/0/allow", "false", "linux.resources.devices[0].allow: expected a boolean"},
      {"/linux/sysctl", {{"net.ipv4.ip_forward", 1}}, "linux.sysctl[\"net.ipv4.ip_forward\"]: expected a string"},
      {"/linux/seccomp", {{"defaultAction", "SCMP_ACT_ALLOW"}, {"syscalls", {{{"names", {"read"}}, {"action", "SCMP_ACT_ALLOW"}, {"args", {{{"index", "0"}}}}}}}}, "linux.seccomp.syscalls[0].args[0].index: expected an integer, got a string"},
      {"/linux/seccomp", {{"defaultAction", "SCMP_ACT_ALLOW"}, {"syscalls", {{{"names", "read"}}}}}, "linux.seccomp.syscalls[0].names: expected an array, got a string"},
      {"/linux/devices", {{{"path", "/dev/x"}, {"type", "c"}, {"fileMode", -1}}}, "linux.devices[0].fileMode: expected an integer between 0 and 4294967295, got -1"},
      {"/linux/maskedPaths/3", 1, "linux.maskedPaths[3]: expected a string"},
  };
  for (const TypeCase& c : cases) {
    std::string json = With(kRuncSpec, c.ptr, c.value);
    EXPECT_TRUE(FailsWith(ParseSpec(json), c.error)) << c.ptr << " = " << c.value.dump();
  }
}

TEST(ParseSpec, TopLevelMustBeAnObject) {
  EXPECT_TRUE(FailsWith(ParseSpec("[]"), "expected an object, got an array"));
  EXPECT_TRUE(FailsWith(ParseSpec("null"), "expected an object, got null"));
  EXPECT_TRUE(FailsWith(ParseSpec("42"), "expected an object, got an integer"));
}

TEST(ParseSpec, RunsValidate) {
  EXPECT_TRUE(FailsWith(ParseSpec(With(kRuncSpec, "/process/cwd", "tmp")),
                        "process.cwd: must be an absolute path, got \"tmp\""));
  EXPECT_TRUE(FailsWith(ParseSpec(Without(kRuncSpec, "/ociVersion")), "ociVersion: must be set"));
}

TEST(ParseProcess, ExecSpec) {
  // What containerd sends for `ctr task exec` / CRI ExecSync.
  auto r = ParseProcess(R"({
    "terminal": true, "consoleSize": {"height": 40, "width": 120},
    "user": {"uid": 1000, "gid": 1000},
    "args": ["/bin/sh", "-c", "echo hi"],
    "env": ["PATH=/bin", "A=b=c"],
    "cwd": "/work",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
    "rlimits": [{"type": "RLIMIT_NPROC", "hard": 100, "soft": 50}],
    "noNewPrivileges": true,
    "selinuxLabel": "system_u:system_r:container_t:s0"
  })");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(r->terminal);
  EXPECT_EQ(r->console_size->width, 120u);
  EXPECT_EQ(r->user.uid, 1000u);
  EXPECT_EQ(r->args, (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
  EXPECT_EQ(r->env[1], "A=b=c");
  EXPECT_EQ(r->cwd, "/work");
  EXPECT_EQ(r->capabilities->effective, std::vector<std::string>{"CAP_KILL"});
  EXPECT_EQ(r->rlimits[0].soft, 50u);
  EXPECT_EQ(r->selinux_label, "system_u:system_r:container_t:s0");
}

TEST(ParseProcess, Errors) {
  EXPECT_TRUE(FailsWith(ParseProcess(R"({"args": ["sh", 2], "cwd": "/"})"),
                        "process.args[1]: expected a string, got an integer"));
  EXPECT_TRUE(FailsWith(ParseProcess(R"({"cwd": "/"})"),
                        "process.args: must be a non-empty array of strings"));
  EXPECT_TRUE(FailsWith(ParseProcess(R"({"args": ["sh"], "cwd": "relative"})"),
                        "process.cwd: must be an absolute path"));
  EXPECT_TRUE(FailsWith(ParseProcess(R"({"args": ["sh"], "user": {"uid": "root"}})"),
                        "process.user.uid: expected an integer, got a string"));
  EXPECT_TRUE(FailsWith(ParseProcess(R"([])"), "process: expected an object, got an array"));
  EXPECT_TRUE(FailsWith(ParseProcess(R"({"args": ["sh"])"), "invalid JSON"));
  EXPECT_TRUE(FailsWith(
      ParseProcess(R"({"args": ["sh"], "capabilities": {"ambient": ["CAP_KILL", "CAP_NOPE"]}})"),
      "process.capabilities.ambient[1]: unknown capability \"CAP_NOPE\""));
}

TEST(ParseLinuxResources, ContainerdUpdate) {
  // The shape containerd sends in UpdateTaskRequest.resources.
  auto r = ParseLinuxResources(
      R"({"memory":{"limit":268435456},"cpu":{"shares":512,"quota":200000,"period":100000}})");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->memory->limit, 268435456);
  EXPECT_FALSE(r->memory->swap);
  EXPECT_EQ(r->cpu->shares, 512u);
  EXPECT_EQ(r->cpu->quota, 200000);
  EXPECT_EQ(r->cpu->period, 100000u);
  EXPECT_FALSE(r->pids);
  EXPECT_TRUE(r->devices.empty());

  auto unlimited = ParseLinuxResources(R"({"memory":{"limit":-1},"cpu":{"quota":-1},"pids":{"limit":0}})");
  ASSERT_TRUE(unlimited.ok()) << unlimited.error().ToString();
  EXPECT_EQ(unlimited->memory->limit, -1);
  EXPECT_EQ(unlimited->pids->limit, 0);
}

TEST(ParseLinuxResources, Errors) {
  EXPECT_TRUE(FailsWith(ParseLinuxResources(R"({"memory":{"limit":"1G"}})"),
                        "resources.memory.limit: expected an integer, got a string"));
  EXPECT_TRUE(FailsWith(ParseLinuxResources(R"({"memory":{"limit":0}})"),
                        "resources.memory.limit: must be positive or -1 (unlimited), got 0"));
  EXPECT_TRUE(FailsWith(ParseLinuxResources(R"({"cpu":{"period":10}})"),
                        "resources.cpu.period: must be between 1000 and 1000000"));
  EXPECT_TRUE(FailsWith(ParseLinuxResources(R"({"cpu":[]})"),
                        "resources.cpu: expected an object, got an array"));
  EXPECT_TRUE(FailsWith(ParseLinuxResources("{\"memory\":"), "invalid JSON"));
}

}  // namespace
}  // namespace cask::oci
