#include <string>

#include <gtest/gtest.h>

#include "lib/oci/parse.h"
#include "lib/oci/test_util_test.h"
#include "lib/oci/testdata_test.h"

namespace cask::oci {
namespace {

using testing::FailsWith;
using testing::With;
using testdata::kContainerdSpec;
using testdata::kRuncSpec;
using Json = nlohmann::json;

struct Case {
  const char* base;
  std::string ptr;
  Json value;
  std::string error;
};

TEST(Validate, InvalidValuesNameThePath) {
  const Json seccomp_base = {{"defaultAction", "SCMP_ACT_ALLOW"}};
  const std::vector<Case> cases = {
      {kRuncSpec, "/ociVersion", "", "ociVersion: must be set"},
      {kRuncSpec, "/ociVersion", "2.0.0", "ociVersion: unsupported version \"2.0.0\", want 1.x"},
      {kRuncSpec, "/process/args", Json::array(), "process.args: must be a non-empty array of strings"},
      {kRuncSpec, "/process/args", {""}, "process.args[0]: must not be empty"},
      {kRuncSpec, "/process/args", {"sh", std::string("a\0b", 3)}, "process.args[1]: must not contain a NUL byte"},
      {kRuncSpec, "/process/env/1", "TERM", "process.env[1]: expected KEY=value, got \"TERM\""},
      {kRuncSpec, "/process/env/0", "=x", "process.env[0]: expected KEY=value"},
      {kRuncSpec, "/process/cwd", "", "process.cwd: must be an absolute path, got \"\""},
      {kRuncSpec, "/process/cwd", "work", "process.cwd: must be an absolute path, got \"work\""},
      {kRuncSpec, "/process/capabilities/effective/2", "CAP_FLY", "process.capabilities.effective[2]: unknown capability \"CAP_FLY\""},
      {kRuncSpec, "/process/capabilities/inheritable", {"cap_kill"}, "process.capabilities.inheritable[0]: unknown capability \"cap_kill\""},
      {kRuncSpec, "/process/rlimits/0/type", "RLIMIT_FILES", "process.rlimits[0].type: unknown rlimit \"RLIMIT_FILES\""},
      {kRuncSpec, "/process/rlimits/1", {{"type", "RLIMIT_NOFILE"}, {"hard", 1}, {"soft", 1}}, "process.rlimits[1].type: duplicate rlimit \"RLIMIT_NOFILE\""},
      {kRuncSpec, "/process/rlimits/0/soft", 2048, "process.rlimits[0]: soft limit 2048 exceeds hard limit 1024"},
      {kRuncSpec, "/process/oomScoreAdj", 1001, "process.oomScoreAdj: must be between -1000 and 1000, got 1001"},
      {kRuncSpec, "/root/path", "", "root.path: must not be empty"},
      {kRuncSpec, "/mounts/0", {{"destination", "/mnt"}, {"type", "virtiofs"}, {"source", "cask"}}, "mounts[0].source: a virtiofs mount of the virtio-fs tag \"cask\": that is the pod's own share and cannot be mounted into a container"},
      {kRuncSpec, "/hostname", std::string(65, 'h'), "hostname: longer than 64 bytes"},
      {kRuncSpec, "/linux/namespaces/3/type", "ipc", "linux.namespaces[3].type: duplicate namespace \"ipc\""},
      {kRuncSpec, "/linux/namespaces/3/type", "time", "hostname: setting a hostname needs a uts namespace"},
      {kRuncSpec, "/linux/namespaces/0/type", "pids", "linux.namespaces[0].type: unknown namespace type \"pids\""},
      {kRuncSpec, "/linux/namespaces/1/path", "netns/x", "linux.namespaces[1].path: must be an absolute path"},
      {kRuncSpec, "/linux/uidMappings", {{{"containerID", 0}, {"hostID", 1000}, {"size", 1}}}, "linux.uidMappings: id mappings need a user namespace"},
      {kRuncSpec, "/mounts/2/destination", "dev/pts", "mounts[2].destination: must be an absolute path, got \"dev/pts\""},
      {kRuncSpec, "/mounts/0/destination", "", "mounts[0].destination: must be an absolute path"},
      {kRuncSpec, "/linux/maskedPaths/4", "proc/x", "linux.maskedPaths[4]: must be an absolute path"},
      {kRuncSpec, "/linux/readonlyPaths/0", "x", "linux.readonlyPaths[0]: must be an absolute path"},
      {kRuncSpec, "/linux/rootfsPropagation", "sideways", "linux.rootfsPropagation: must be one of"},
      {kRuncSpec, "/linux/sysctl", {{"../../etc/passwd", "x"}}, "linux.sysctl[\"../../etc/passwd\"]: invalid sysctl name"},
      {kRuncSpec, "/linux/devices", {{{"path", "dev/null"}, {"type", "c"}}}, "linux.devices[0].path: must be an absolute path"},
      {kRuncSpec, "/linux/devices", {{{"path", "/dev/null"}, {"type", "x"}}}, "linux.devices[0].type: must be one of c, b, u, p, got \"x\""},
      {kRuncSpec, "/linux/resources/devices/0/type", "z", "linux.resources.devices[0].type: must be one of a, c, b"},
      {kRuncSpec, "/linux/resources/devices/0/access", "rwx", "linux.resources.devices[0].access: must consist of r, w, m"},
      {kRuncSpec, "/linux/resources/memory", {{"limit", 0}}, "linux.resources.memory.limit: must be positive or -1 (unlimited), got 0"},
      {kRuncSpec, "/linux/resources/memory", {{"limit", -5}}, "linux.resources.memory.limit: must be positive or -1 (unlimited), got -5"},
      {kRuncSpec, "/linux/resources/memory", {{"swap", -2}}, "linux.resources.memory.swap: must be -1 (unlimited) or non-negative"},
      {kRuncSpec, "/linux/resources/memory", {{"swappiness", 101}}, "linux.resources.memory.swappiness: must be between 0 and 100, got 101"},
      {kRuncSpec, "/linux/resources/cpu", {{"quota", 0}}, "linux.resources.cpu.quota: must be -1 (unlimited) or at least 1000"},
      {kRuncSpec, "/linux/resources/cpu", {{"quota", -7}}, "linux.resources.cpu.quota: must be -1 (unlimited) or at least 1000"},
      {kRuncSpec, "/linux/resources/cpu", {{"period", 2000000}}, "linux.resources.cpu.period: must be between 1000 and 1000000 microseconds, got 2000000"},
      {kRuncSpec, "/linux/resources/cpu", {{"shares", 300000}}, "linux.resources.cpu.shares: must be at most 262144"},
      {kRuncSpec, "/linux/resources/cpu", {{"cpus", "0-"}}, "linux.resources.cpu.cpus: expected a list like"},
      {kRuncSpec, "/linux/resources/cpu", {{"mems", "a"}}, "linux.resources.cpu.mems: expected a list like"},
      {kRuncSpec, "/linux/resources/blockIO", {{"weight", 5}}, "linux.resources.blockIO.weight: must be between 10 and 1000, got 5"},
      {kRuncSpec, "/linux/resources/hugepageLimits", {{{"pageSize", "../2MB"}, {"limit", 1}}}, "linux.resources.hugepageLimits[0].pageSize: expected a page size"},
      {kRuncSpec, "/linux/resources/unified", {{"../../release_agent", "x"}}, "linux.resources.unified[\"../../release_agent\"]: expected a cgroup v2 file name"},
      {kRuncSpec, "/linux/resources/unified", {{"memory", "x"}}, "linux.resources.unified[\"memory\"]: expected a cgroup v2 file name"},
      {kRuncSpec, "/linux/seccomp", {{"defaultAction", "SCMP_ACT_MAYBE"}}, "linux.seccomp.defaultAction: unknown seccomp action \"SCMP_ACT_MAYBE\""},
      {kRuncSpec, "/linux/seccomp", Json::object(), "linux.seccomp.defaultAction: unknown seccomp action \"\""},
      {kContainerdSpec, "/linux/seccomp/architectures/1", "SCMP_ARCH_Z80", "linux.seccomp.architectures[1]: unknown seccomp architecture \"SCMP_ARCH_Z80\""},
      {kContainerdSpec, "/linux/seccomp/flags/0", "SECCOMP_FILTER_FLAG_FAST", "linux.seccomp.flags[0]: unknown seccomp flag"},
      {kContainerdSpec, "/linux/seccomp/syscalls/1/action", "SCMP_ACT_PERMIT", "linux.seccomp.syscalls[1].action: unknown seccomp action \"SCMP_ACT_PERMIT\""},
      {kContainerdSpec, "/linux/seccomp/syscalls/1/names", Json::array(), "linux.seccomp.syscalls[1].names: must not be empty"},
      {kContainerdSpec, "/linux/seccomp/syscalls/2/args/0/op", "SCMP_CMP_APPROX", "linux.seccomp.syscalls[2].args[0].op: unknown seccomp operator \"SCMP_CMP_APPROX\""},
      {kContainerdSpec, "/linux/seccomp/syscalls/2/args/0/index", 6, "linux.seccomp.syscalls[2].args[0].index: must be between 0 and 5, got 6"},
  };
  for (const Case& c : cases) {
    std::string json = With(c.base, c.ptr, c.value);
    EXPECT_TRUE(FailsWith(ParseSpec(json), c.error)) << c.ptr << " = " << c.value.dump();
  }
}

TEST(Validate, AcceptsEdgeValues) {
  const std::vector<std::pair<std::string, Json>> ok = {
      {"/linux/resources/memory", {{"limit", -1}, {"swap", -1}}},
      {"/linux/resources/cpu", {{"quota", -1}, {"period", 1000}, {"cpus", "0-3,5,7-8"}, {"shares", 2}}},
      {"/linux/resources/cpu", {{"quota", 1000}, {"period", 1000000}}},
      {"/process/oomScoreAdj", -1000},
      {"/process/capabilities/bounding", {"CAP_CHOWN", "CAP_CHECKPOINT_RESTORE", "CAP_BPF", "CAP_PERFMON"}},
      {"/process/rlimits/1", {{"type", "RLIMIT_RTTIME"}, {"hard", 18446744073709551615ULL}, {"soft", 0}}},
      {"/linux/rootfsPropagation", "rprivate"},
      {"/linux/sysctl", {{"net.ipv4.conf.eth0/1.forwarding", "1"}}},
      {"/linux/namespaces/5", {{"type", "user"}}},
      {"/linux/seccomp", {{"defaultAction", "SCMP_ACT_KILL_PROCESS"}}},
      {"/hostname", ""},
  };
  for (const auto& [ptr, value] : ok) {
    auto r = ParseSpec(With(kRuncSpec, ptr, value));
    EXPECT_TRUE(r.ok()) << ptr << " = " << value.dump() << ": " << r.error().ToString();
  }
}

TEST(Validate, HostnameWithoutLinuxSection) {
  Spec s;
  s.oci_version = "1.0.0";
  s.hostname = "h";
  Status st = Validate(s);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  s.hostname.clear();
  EXPECT_TRUE(Validate(s).ok());
}

TEST(Validate, ProcessPrefixIsUsed) {
  Process p;
  p.args = {"sh"};
  p.cwd = "x";
  Status st = ValidateProcess(p, "exec");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().ToString(), "exec.cwd: must be an absolute path, got \"x\"");
}

TEST(Validate, ResourcesPrefixIsUsed) {
  LinuxResources r;
  r.memory = MemoryResources{};
  r.memory->limit = 0;
  Status st = ValidateLinuxResources(r, "update");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().ToString(), "update.memory.limit: must be positive or -1 (unlimited), got 0");
}

}  // namespace
}  // namespace cask::oci
