#include "lib/sandbox/vm_settings.h"

#include <gtest/gtest.h>

#include "lib/hypervisor/qemu_cmdline.h"

namespace cask::sandbox {
namespace {

TEST(VmSettingsTest, EveryConfigKeyReachesTheSettings) {
  config::Config c;
  c.hypervisor.path = "/q";
  c.hypervisor.kernel = "/k";
  c.hypervisor.initrd = "/i";
  c.hypervisor.machine_type = "q35";
  c.hypervisor.accel = config::Accel::kTcg;
  c.hypervisor.vcpus = 3;
  c.hypervisor.memory_mib = 1024;
  c.hypervisor.kernel_params = "a=b";
  c.hypervisor.virtiofsd_path = "/v";
  c.hypervisor.virtiofs_cache = "none";
  c.hypervisor.runas = "1000:1000";
  c.agent.channel = config::AgentChannel::kSerial;
  c.runtime.debug = true;
  c.runtime.sandbox_cgroup = true;
  c.runtime.cgroup_parent = "/pods";
  c.runtime.cgroup_shim = true;
  c.runtime.cgroup_memory_overhead_mib = 100;
  c.runtime.cgroup_pids_max = 50;
  hypervisor::VmSettings s = VmSettingsFromConfig(c);
  EXPECT_EQ(s.qemu_path, "/q");
  EXPECT_EQ(s.kernel, "/k");
  EXPECT_EQ(s.initrd, "/i");
  EXPECT_EQ(s.machine_type, "q35");
  EXPECT_EQ(s.accel, hypervisor::Accel::kTcg);
  EXPECT_EQ(s.vcpus, 3u);
  EXPECT_EQ(s.memory_mib, 1024u);
  EXPECT_EQ(s.kernel_params, "a=b");
  EXPECT_EQ(s.virtiofsd_path, "/v");
  EXPECT_EQ(s.virtiofs_cache, "none");
  EXPECT_EQ(s.channel, hypervisor::ChannelRequest::kSerial);
  EXPECT_TRUE(s.debug);
  EXPECT_EQ(s.runas, "1000:1000");
  EXPECT_TRUE(s.cgroup.enabled);
  EXPECT_EQ(s.cgroup.parent, "/pods");
  EXPECT_TRUE(s.cgroup.include_caller);
  EXPECT_EQ(s.cgroup.memory_overhead_mib, 100u);
  EXPECT_EQ(s.cgroup.cpu_quota_cores, 4u);
  EXPECT_EQ(s.cgroup.pids_max, 50u);
  // Per-pod fields are the sandbox's to fill.
  EXPECT_TRUE(s.id.empty());
  EXPECT_TRUE(s.state_dir.empty());
  EXPECT_TRUE(s.shared_dir.empty());
}

TEST(VmSettingsTest, Runas) {
  EXPECT_EQ(ResolveRunas("auto", true), "nobody");
  EXPECT_EQ(ResolveRunas("auto", false), "");
  EXPECT_EQ(ResolveRunas("none", true), "");
  EXPECT_EQ(ResolveRunas("qemu", false), "qemu");
}

// The settings' runas reaches QEMU's argv, and the seccomp sandbox stays on.
TEST(VmSettingsTest, RunasInQemuArgv) {
  hypervisor::qemu::QemuCommand cmd;
  cmd.binary = "/q";
  cmd.runas = "nobody";
  auto argv = hypervisor::qemu::BuildQemuArgv(cmd);
  auto at = [&](const std::string& flag) {
    for (size_t i = 0; i + 1 < argv.size(); i++)
      if (argv[i] == flag) return argv[i + 1];
    return std::string();
  };
  EXPECT_EQ(at("-runas"), "nobody");
  EXPECT_EQ(at("-sandbox"), "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny");
  cmd.runas.clear();
  argv = hypervisor::qemu::BuildQemuArgv(cmd);
  EXPECT_EQ(at("-runas"), "");
  EXPECT_EQ(at("-sandbox"), "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
}

}  // namespace
}  // namespace cask::sandbox
