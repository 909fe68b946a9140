#include "lib/config/config.h"

#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "lib/base/fs.h"

namespace cask::config {
namespace {

constexpr const char* kOrigin = "/etc/cask/test.toml";

Config Defaults() {
  Config c;
  c.source = kOrigin;
  return c;
}

Config MustParse(const std::string& text) {
  auto r = Parse(text, kOrigin);
  EXPECT_TRUE(r.ok()) << r.error().ToString();
  return r.ok() ? *r : Config{};
}

// Expects INVALID_ARGUMENT with exactly `message`.
void ExpectError(const std::string& text, const std::string& message) {
  auto r = Parse(text, kOrigin);
  ASSERT_FALSE(r.ok()) << "parsed: " << text;
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().ToString(), message) << "input: " << text;
}

TEST(ConfigParse, EmptyIsDefaults) {
  Config c = MustParse("");
  EXPECT_EQ(c, Defaults());
  EXPECT_EQ(c.hypervisor.path, "/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(c.hypervisor.kernel, "/usr/share/cask/vmlinux");
  EXPECT_EQ(c.hypervisor.initrd, "/usr/share/cask/initrd.img");
  EXPECT_EQ(c.hypervisor.machine_type, "microvm");
  EXPECT_EQ(c.hypervisor.accel, Accel::kAuto);
  EXPECT_EQ(c.hypervisor.vcpus, 1u);
  EXPECT_EQ(c.hypervisor.memory_mib, 256u);
  EXPECT_EQ(c.hypervisor.kernel_params, "");
  EXPECT_EQ(c.hypervisor.virtiofsd_path, "/usr/lib/qemu/virtiofsd");
  EXPECT_EQ(c.hypervisor.virtiofs_cache, "auto");
  EXPECT_EQ(c.hypervisor.tcg_tb_size_mib, kDefaultTcgTbSizeMib);
  EXPECT_TRUE(c.hypervisor.free_page_reporting);
  EXPECT_TRUE(c.hypervisor.release_boot_files);
  EXPECT_EQ(c.agent.channel, AgentChannel::kAuto);
  EXPECT_EQ(c.agent.connect_timeout_ms, 60000u);
  EXPECT_FALSE(c.runtime.debug);
  EXPECT_EQ(c.runtime.state_dir, "/run/cask");
  EXPECT_TRUE(c.runtime.default_seccomp);
  EXPECT_EQ(c.source, kOrigin);
  // Empty tables and comments change nothing.
  EXPECT_EQ(MustParse("# nothing\n[hypervisor]\n[agent]\n[runtime]\n"), Defaults());
}

TEST(ConfigParse, EveryKey) {
  Config c = MustParse(R"(
[hypervisor]
path = "/opt/qemu/bin/qemu-system-x86_64"
kernel = "/boot/cask-vmlinux"
initrd = "/boot/cask-initrd.img"
machine_type = "q35"
accel = "tcg"
vcpus = 4
memory_mib = 2048
kernel_params = "loglevel=7 cask.x=\"y\""
virtiofsd_path = "/usr/libexec/virtiofsd"
virtiofs_cache = "none"
runas = "1000:1000"

[agent]
channel = "serial"
connect_timeout_ms = 120000

[runtime]
debug = true
state_dir = "/var/run/cask-test"
sandbox_cgroup = false
cgroup_parent = "/system.slice/cask"
cgroup_shim = true
cgroup_memory_overhead_mib = 0
cgroup_pids_max = 77
)");
  EXPECT_EQ(c.hypervisor.path, "/opt/qemu/bin/qemu-system-x86_64");
  EXPECT_EQ(c.hypervisor.kernel, "/boot/cask-vmlinux");
  EXPECT_EQ(c.hypervisor.initrd, "/boot/cask-initrd.img");
  EXPECT_EQ(c.hypervisor.machine_type, "q35");
  EXPECT_EQ(c.hypervisor.accel, Accel::kTcg);
  EXPECT_EQ(c.hypervisor.vcpus, 4u);
  EXPECT_EQ(c.hypervisor.memory_mib, 2048u);
  EXPECT_EQ(c.hypervisor.kernel_params, "loglevel=7 cask.x=\"y\"");
  EXPECT_EQ(c.hypervisor.virtiofsd_path, "/usr/libexec/virtiofsd");
  EXPECT_EQ(c.hypervisor.virtiofs_cache, "none");
  EXPECT_EQ(c.agent.channel, AgentChannel::kSerial);
  EXPECT_EQ(c.agent.connect_timeout_ms, 120000u);
  EXPECT_TRUE(c.runtime.debug);
  EXPECT_EQ(c.runtime.state_dir, "/var/run/cask-test");
  EXPECT_EQ(c.hypervisor.runas, "1000:1000");
  EXPECT_FALSE(c.runtime.sandbox_cgroup);
  EXPECT_EQ(c.runtime.cgroup_parent, "/system.slice/cask");
  EXPECT_TRUE(c.runtime.cgroup_shim);
  EXPECT_EQ(c.runtime.cgroup_memory_overhead_mib, 0u);
  EXPECT_EQ(c.runtime.cgroup_pids_max, 77u);
}

TEST(ConfigParse, EnumWords) {
  EXPECT_EQ(MustParse("[hypervisor]\nmachine_type = \"pc\"").hypervisor.machine_type, "pc");
  EXPECT_EQ(MustParse("[hypervisor]\nmachine_type = \"microvm\"").hypervisor.machine_type, "microvm");
  EXPECT_EQ(MustParse("[hypervisor]\naccel = \"kvm\"").hypervisor.accel, Accel::kKvm);
  EXPECT_EQ(MustParse("[hypervisor]\naccel = \"auto\"").hypervisor.accel, Accel::kAuto);
  EXPECT_EQ(MustParse("[hypervisor]\nvirtiofs_cache = \"always\"").hypervisor.virtiofs_cache, "always");
  EXPECT_EQ(MustParse("[agent]\nchannel = \"vsock\"").agent.channel, AgentChannel::kVsock);
  EXPECT_EQ(MustParse("[agent]\nchannel = \"auto\"").agent.channel, AgentChannel::kAuto);
  // Dotted keys and inline tables are plain TOML and work too.
  EXPECT_EQ(MustParse("hypervisor.vcpus = 2").hypervisor.vcpus, 2u);
  EXPECT_EQ(MustParse("runtime = { debug = true }").runtime.debug, true);
  EXPECT_FALSE(MustParse("[runtime]\ndefault_seccomp = false").runtime.default_seccomp);
}

TEST(ConfigParse, Bounds) {
  EXPECT_EQ(MustParse("[hypervisor]\nvcpus = 1").hypervisor.vcpus, 1u);
  EXPECT_EQ(MustParse("[hypervisor]\ntcg_tb_size_mib = 0").hypervisor.tcg_tb_size_mib, 0u);
  EXPECT_FALSE(MustParse("[hypervisor]\nfree_page_reporting = false").hypervisor.free_page_reporting);
  EXPECT_FALSE(MustParse("[hypervisor]\nrelease_boot_files = false").hypervisor.release_boot_files);
  EXPECT_EQ(MustParse("[hypervisor]\ntcg_tb_size_mib = 4096").hypervisor.tcg_tb_size_mib, 4096u);
  EXPECT_EQ(MustParse("[hypervisor]\nvcpus = 64").hypervisor.vcpus, 64u);
  EXPECT_EQ(MustParse("[hypervisor]\nmemory_mib = 64").hypervisor.memory_mib, 64u);
  EXPECT_EQ(MustParse("[hypervisor]\nmemory_mib = 65536").hypervisor.memory_mib, 65536u);
  EXPECT_EQ(MustParse("[agent]\nconnect_timeout_ms = 100").agent.connect_timeout_ms, 100u);
  EXPECT_EQ(MustParse("[agent]\nteardown_timeout_ms = 2000").agent.teardown_timeout_ms, 2000u);
  ExpectError("[agent]\nteardown_timeout_ms = 1",
              "/etc/cask/test.toml: agent.teardown_timeout_ms: must be between 100 and 600000, got 1");
  ExpectError("[hypervisor]\nmemory_mib = 12",
              "/etc/cask/test.toml: hypervisor.memory_mib: must be between 64 and 65536, got 12");
  ExpectError("[hypervisor]\nmemory_mib = 65537",
              "/etc/cask/test.toml: hypervisor.memory_mib: must be between 64 and 65536, got 65537");
  ExpectError("[hypervisor]\ntcg_tb_size_mib = 4097",
              "/etc/cask/test.toml: hypervisor.tcg_tb_size_mib: must be between 0 and 4096, got 4097");
  ExpectError("[hypervisor]\nvcpus = 0",
              "/etc/cask/test.toml: hypervisor.vcpus: must be between 1 and 64, got 0");
  ExpectError("[hypervisor]\nvcpus = 65",
              "/etc/cask/test.toml: hypervisor.vcpus: must be between 1 and 64, got 65");
  ExpectError("[hypervisor]\nvcpus = -1",
              "/etc/cask/test.toml: hypervisor.vcpus: must be between 1 and 64, got -1");
  ExpectError("[hypervisor]\nvcpus = 9223372036854775807",
              "/etc/cask/test.toml: hypervisor.vcpus: must be between 1 and 64, got 9223372036854775807");
  // The sizing bounds: at least the base size; an unset maximum follows it.
  EXPECT_EQ(MustParse("[hypervisor]\nmax_vcpus = 16").hypervisor.max_vcpus, 16u);
  EXPECT_EQ(MustParse("[hypervisor]\nvcpus = 12").hypervisor.max_vcpus, 12u);
  EXPECT_EQ(MustParse("[hypervisor]\nmemory_mib = 10000").hypervisor.max_memory_mib, 10000u);
  ExpectError("[hypervisor]\nvcpus = 4\nmax_vcpus = 2",
              "/etc/cask/test.toml: hypervisor.max_vcpus: must be at least hypervisor.vcpus (4)");
  ExpectError("[hypervisor]\nmax_memory_mib = 128",
              "/etc/cask/test.toml: hypervisor.max_memory_mib: must be at least hypervisor.memory_mib (256)");
  ExpectError("[agent]\nconnect_timeout_ms = 5",
              "/etc/cask/test.toml: agent.connect_timeout_ms: must be between 100 and 3600000, got 5");
}

TEST(ConfigParse, UnknownTablesAndKeys) {
  ExpectError("[hypervisor]\nmemory = 512",
              "/etc/cask/test.toml: hypervisor.memory: unknown key");
  ExpectError("[agent]\ntimeout = 5", "/etc/cask/test.toml: agent.timeout: unknown key");
  ExpectError("[runtime]\nlog_level = \"debug\"",
              "/etc/cask/test.toml: runtime.log_level: unknown key");
  ExpectError("[network]\nmode = \"tap\"",
              "/etc/cask/test.toml: network: unknown table (known: hypervisor, agent, runtime, pool)");
  ExpectError("debug = true",
              "/etc/cask/test.toml: debug: unknown key (keys belong in [hypervisor], [agent], [runtime] or [pool])");
  ExpectError("[hypervisor.qemu]\npath = \"/x\"",
              "/etc/cask/test.toml: hypervisor.qemu: unknown key");
  ExpectError("hypervisor = 3", "/etc/cask/test.toml: hypervisor: expected a table, got an integer");
  ExpectError("[[runtime]]\ndebug = true",
              "/etc/cask/test.toml: runtime: expected a table, got an array");
}

TEST(ConfigParse, WrongTypes) {
  ExpectError("[hypervisor]\npath = 5",
              "/etc/cask/test.toml: hypervisor.path: expected a string, got an integer");
  ExpectError("[hypervisor]\nvcpus = \"2\"",
              "/etc/cask/test.toml: hypervisor.vcpus: expected an integer, got a string");
  ExpectError("[hypervisor]\nmemory_mib = 512.0",
              "/etc/cask/test.toml: hypervisor.memory_mib: expected an integer, got a float");
  ExpectError("[hypervisor]\nkernel_params = [\"a\"]",
              "/etc/cask/test.toml: hypervisor.kernel_params: expected a string, got an array");
  ExpectError("[hypervisor]\naccel = true",
              "/etc/cask/test.toml: hypervisor.accel: expected a string, got a boolean");
  ExpectError("[agent]\nconnect_timeout_ms = 1979-05-27",
              "/etc/cask/test.toml: agent.connect_timeout_ms: expected an integer, got a date");
  ExpectError("[runtime]\ndebug = \"yes\"",
              "/etc/cask/test.toml: runtime.debug: expected a boolean, got a string");
  ExpectError("[runtime]\ndefault_seccomp = \"no\"",
              "/etc/cask/test.toml: runtime.default_seccomp: expected a boolean, got a string");
  ExpectError("[runtime]\ndebug = 1",
              "/etc/cask/test.toml: runtime.debug: expected a boolean, got an integer");
  ExpectError("[runtime]\nstate_dir = {}",
              "/etc/cask/test.toml: runtime.state_dir: expected a string, got a table");
}

TEST(ConfigParse, BadValues) {
  ExpectError("[hypervisor]\nmachine_type = \"virt\"",
              "/etc/cask/test.toml: hypervisor.machine_type: must be one of microvm, q35, pc, got \"virt\"");
  ExpectError("[hypervisor]\naccel = \"hvf\"",
              "/etc/cask/test.toml: hypervisor.accel: must be one of auto, kvm, tcg, got \"hvf\"");
  ExpectError("[hypervisor]\naccel = \"KVM\"",
              "/etc/cask/test.toml: hypervisor.accel: must be one of auto, kvm, tcg, got \"KVM\"");
  ExpectError("[hypervisor]\nvirtiofs_cache = \"never\"",
              "/etc/cask/test.toml: hypervisor.virtiofs_cache: must be one of auto, always, none, got \"never\"");
  ExpectError("[agent]\nchannel = \"virtio\"",
              "/etc/cask/test.toml: agent.channel: must be one of auto, vsock, serial, got \"virtio\"");
  ExpectError("[runtime]\ncgroup_parent = \"../etc\"",
              "/etc/cask/test.toml: runtime.cgroup_parent: must be cgroup names of [A-Za-z0-9_.-] separated by '/', got \"../etc\"");
  ExpectError("[runtime]\ncgroup_parent = \"a//b\"",
              "/etc/cask/test.toml: runtime.cgroup_parent: must be cgroup names of [A-Za-z0-9_.-] separated by '/', got \"a//b\"");
  ExpectError("[runtime]\ncgroup_parent = \"a/./b\"",
              "/etc/cask/test.toml: runtime.cgroup_parent: must be cgroup names of [A-Za-z0-9_.-] separated by '/', got \"a/./b\"");
  ExpectError("[hypervisor]\nrunas = \"\"",
              "/etc/cask/test.toml: hypervisor.runas: must not be empty (\"none\" keeps QEMU root)");
  ExpectError("[hypervisor]\nkernel_params = \"a\\nb\"",
              "/etc/cask/test.toml: hypervisor.kernel_params: must not contain control characters");
}

TEST(ConfigParse, PathsMustBeAbsolute) {
  for (const char* key : {"path", "kernel", "initrd", "virtiofsd_path"}) {
    ExpectError(std::string("[hypervisor]\n") + key + " = \"bin/x\"",
                std::string("/etc/cask/test.toml: hypervisor.") + key +
                    ": must be an absolute path, got \"bin/x\"");
    ExpectError(std::string("[hypervisor]\n") + key + " = \"\"",
                std::string("/etc/cask/test.toml: hypervisor.") + key +
                    ": must be an absolute path, got \"\"");
  }
  ExpectError("[runtime]\nstate_dir = \"run/cask\"",
              "/etc/cask/test.toml: runtime.state_dir: must be an absolute path, got \"run/cask\"");
}

TEST(ConfigParse, MalformedTomlShowsLine) {
  auto r = Parse("[hypervisor]\nvcpus = 2\nmemory_mib = = 3\n", kOrigin);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().ToString().rfind("/etc/cask/test.toml: line 3, column ", 0), 0u)
      << r.error().ToString();

  r = Parse("[hypervisor\n", kOrigin);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("line 1"), std::string::npos) << r.error().ToString();

  // Duplicate keys and tables are syntax errors in TOML.
  r = Parse("[agent]\nchannel = \"vsock\"\nchannel = \"serial\"\n", kOrigin);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("line 3"), std::string::npos) << r.error().ToString();
  r = Parse("[runtime]\n[runtime]\n", kOrigin);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("line 2"), std::string::npos) << r.error().ToString();

  r = Parse("[hypervisor]\npath = \"/unterminated\n", kOrigin);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("line 2"), std::string::npos) << r.error().ToString();
}

TEST(ConfigPool, KeysAndBounds) {
  Config d = Defaults();
  EXPECT_TRUE(d.pool.enabled);
  EXPECT_EQ(d.pool.size, 1u);
  EXPECT_EQ(d.pool.socket, "/run/cask-pool/pool.sock");
  auto c = Parse("[pool]\nenabled = false\nsize = 3\nsocket = \"/tmp/p.sock\"\nstate_dir = \"/tmp/pool\"\n"
                 "cgroup_parent = \"/cask-pool.vms\"\nidle_memory_mib = 512\nautostart = true\n",
                 kOrigin);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_FALSE(c->pool.enabled);
  EXPECT_EQ(c->pool.size, 3u);
  EXPECT_EQ(c->pool.state_dir, "/tmp/pool");
  EXPECT_EQ(c->pool.cgroup_parent, "/cask-pool.vms");
  EXPECT_EQ(c->pool.idle_memory_mib, 512u);
  EXPECT_TRUE(c->pool.autostart);
  auto bad = Parse("[pool]\nsize = 65\n", kOrigin);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("pool.size"), std::string::npos) << bad.error().ToString();
  bad = Parse("[pool]\nsocket = \"pool.sock\"\n", kOrigin);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("pool.socket: must be an absolute path"), std::string::npos);
  bad = Parse("[pool]\ncgroup_parent = \"../x\"\n", kOrigin);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("pool.cgroup_parent"), std::string::npos);
  bad = Parse("[pool]\nsizes = 1\n", kOrigin);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("pool.sizes: unknown key"), std::string::npos);
}

TEST(ConfigToToml, RoundTrip) {
  Config c = Defaults();
  auto back = Parse(ToToml(c), kOrigin);
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(*back, c);

  c.hypervisor.path = "/opt/q u\"o\\te/qemu";
  c.hypervisor.machine_type = "pc";
  c.hypervisor.accel = Accel::kKvm;
  c.hypervisor.vcpus = 64;
  c.hypervisor.memory_mib = 65536;
  c.hypervisor.max_vcpus = 64;
  c.hypervisor.max_memory_mib = 65536;
  c.hypervisor.kernel_params = "quiet cask.x=\"ü\"";
  c.hypervisor.virtiofs_cache = "always";
  c.agent.channel = AgentChannel::kVsock;
  c.agent.connect_timeout_ms = 100;
  c.runtime.debug = true;
  c.runtime.state_dir = "/tmp/cask state";
  c.hypervisor.runas = "none";
  c.runtime.sandbox_cgroup = false;
  c.runtime.cgroup_parent = "/cask.slice";
  c.runtime.cgroup_shim = true;
  c.runtime.cgroup_memory_overhead_mib = 1;
  c.runtime.cgroup_pids_max = 0;
  c.pool.enabled = false;
  c.pool.size = 7;
  c.pool.socket = "/tmp/x/pool.sock";
  c.pool.autostart = true;
  std::string text = ToToml(c);
  back = Parse(text, kOrigin);
  ASSERT_TRUE(back.ok()) << back.error().ToString() << "\n" << text;
  EXPECT_EQ(*back, c);
  EXPECT_NE(text.find("# cask configuration, from /etc/cask/test.toml"), std::string::npos);
  EXPECT_NE(text.find("accel = \"kvm\""), std::string::npos);
  EXPECT_NE(text.find("debug = true"), std::string::npos);
}

TEST(ConfigNames, Words) {
  EXPECT_EQ(AccelName(Accel::kAuto), "auto");
  EXPECT_EQ(AccelName(Accel::kKvm), "kvm");
  EXPECT_EQ(AccelName(Accel::kTcg), "tcg");
  EXPECT_EQ(ChannelName(AgentChannel::kAuto), "auto");
  EXPECT_EQ(ChannelName(AgentChannel::kVsock), "vsock");
  EXPECT_EQ(ChannelName(AgentChannel::kSerial), "serial");
}

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/config_test_XXXXXX";
    ASSERT_NE(mkdtemp(dir_.data()), nullptr);
  }
  void TearDown() override { ASSERT_TRUE(RemoveAll(dir_).ok()); }
  std::string dir_;
};

TEST_F(ConfigFileTest, LoadFile) {
  std::string path = dir_ + "/configuration.toml";
  ASSERT_TRUE(WriteFile(path, "[hypervisor]\nvcpus = 3\n").ok());
  auto c = LoadFile(path);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->hypervisor.vcpus, 3u);
  EXPECT_EQ(c->source, path);

  ASSERT_TRUE(WriteFile(path, "[hypervisor]\nvcpus = 300\n").ok());
  c = LoadFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().ToString(), path + ": hypervisor.vcpus: must be between 1 and 64, got 300");
}

TEST_F(ConfigFileTest, MissingFileIsNotFound) {
  std::string path = dir_ + "/absent.toml";
  auto c = LoadFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kNotFound);
  EXPECT_NE(c.error().ToString().find(path), std::string::npos) << c.error().ToString();
}

TEST_F(ConfigFileTest, UnreadableFileIsAnError) {
  // A directory where the file should be: read fails, not NOT_FOUND.
  auto c = LoadFile(dir_);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().code(), Code::kNotFound);
  EXPECT_NE(c.error().ToString().find(dir_), std::string::npos) << c.error().ToString();
}

TEST(ConfigLoadDefault, UsesFileOrBuiltins) {
  auto c = LoadDefault();
  if (PathExists(kDefaultPath)) {
    // Whatever is installed must at least load or fail naming the file.
    if (c.ok()) {
      EXPECT_EQ(c->source, kDefaultPath);
    } else {
      EXPECT_NE(c.error().ToString().find(kDefaultPath), std::string::npos);
    }
  } else {
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    EXPECT_EQ(c->source, "(built-in defaults)");
    Config expected;
    expected.source = "(built-in defaults)";
    EXPECT_EQ(*c, expected);
  }
}

TEST(ConfigShippedFile, ParsesToDefaults) {
  // config/configuration.toml (installed as kDefaultPath) states every default.
  std::string path = std::string(CASK_SOURCE_DIR) + "/config/configuration.toml";
  auto c = LoadFile(path);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  Config expected;
  expected.source = path;
  EXPECT_EQ(*c, expected);
  // And every key is present in it (not just left to defaults).
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  for (const char* key : {"path", "kernel", "initrd", "machine_type", "accel", "vcpus", "memory_mib",
                          "kernel_params", "virtiofsd_path", "virtiofs_cache", "channel",
                          "connect_timeout_ms", "teardown_timeout_ms", "debug", "state_dir", "runas",
                          "sandbox_cgroup", "cgroup_parent", "cgroup_shim", "cgroup_memory_overhead_mib",
                          "cgroup_pids_max"}) {
    EXPECT_NE(text->find(std::string("\n") + key + " = "), std::string::npos) << key;
  }
}

}  // namespace
}  // namespace cask::config
