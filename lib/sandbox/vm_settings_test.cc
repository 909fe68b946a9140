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

TEST(SizePodVmTest, ConfigurationAloneWithoutAnnotations) {
  config::HypervisorConfig h;
  h.vcpus = 2;
  h.memory_mib = 512;
  auto s = SizePodVm(h, {{"io.kubernetes.cri.container-type", "sandbox"}});
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_EQ(s->vcpus, 2u);
  EXPECT_EQ(s->memory_mib, 512u);
  EXPECT_EQ(s->reason, "configuration");
}

TEST(SizePodVmTest, PodLimitsAddToTheBaseWithinTheMaximum) {
  config::HypervisorConfig h;
  h.vcpus = 1;
  h.memory_mib = 256;
  h.max_vcpus = 4;
  h.max_memory_mib = 1024;
  auto s = SizePodVm(h, {{std::string(kSandboxCpuQuotaAnnotation), "150000"},
                         {std::string(kSandboxCpuPeriodAnnotation), "100000"},
                         {std::string(kSandboxMemoryAnnotation), std::to_string(300ull << 20)}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->vcpus, 3u);  // 1 + ceil(1.5)
  EXPECT_EQ(s->memory_mib, 556u);
  EXPECT_EQ(s->reason, "pod limits");
  s = SizePodVm(h, {{std::string(kSandboxCpuQuotaAnnotation), "1600000"},
                    {std::string(kSandboxCpuPeriodAnnotation), "100000"},
                    {std::string(kSandboxMemoryAnnotation), std::to_string(4ull << 30)}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->vcpus, 4u);
  EXPECT_EQ(s->memory_mib, 1024u);
  // Unlimited (-1) or malformed limits from containerd are not counted.
  s = SizePodVm(h, {{std::string(kSandboxCpuQuotaAnnotation), "-1"},
                    {std::string(kSandboxCpuPeriodAnnotation), "100000"},
                    {std::string(kSandboxMemoryAnnotation), "lots"}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->vcpus, 1u);
  EXPECT_EQ(s->memory_mib, 256u);
}

TEST(SizePodVmTest, AnnotationsOverrideWithinBounds) {
  config::HypervisorConfig h;
  h.max_vcpus = 4;
  h.max_memory_mib = 2048;
  auto s = SizePodVm(h, {{"io.cask.vcpus", "4"}, {"io.cask.memory_mib", "1536"}});
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_EQ(s->vcpus, 4u);
  EXPECT_EQ(s->memory_mib, 1536u);
  EXPECT_EQ(s->reason, "annotations");
}

TEST(SizePodVmTest, OutOfBoundsOrMalformedAnnotationsAreRefused) {
  config::HypervisorConfig h;
  h.max_vcpus = 4;
  h.max_memory_mib = 2048;
  struct Case {
    const char* key;
    const char* value;
    const char* want;
  } cases[] = {
      {"io.cask.vcpus", "5", "annotation io.cask.vcpus=\"5\": must be a whole number between 1 and 4"},
      {"io.cask.vcpus", "0", "between 1 and 4"},
      {"io.cask.vcpus", "two", "io.cask.vcpus=\"two\""},
      {"io.cask.vcpus", "2 ", "io.cask.vcpus"},
      {"io.cask.memory_mib", "4096", "io.cask.memory_mib=\"4096\": must be a whole number between 64 and 2048"},
      {"io.cask.memory_mib", "-1", "io.cask.memory_mib"},
      {"io.cask.memory_mib", "", "io.cask.memory_mib"},
  };
  for (const auto& c : cases) {
    auto s = SizePodVm(h, {{c.key, c.value}});
    ASSERT_FALSE(s.ok()) << c.key << "=" << c.value;
    EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
    EXPECT_NE(s.error().ToString().find(c.want), std::string::npos) << s.error().ToString();
  }
}

}  // namespace
}  // namespace cask::sandbox
