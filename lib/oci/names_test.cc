#include "lib/oci/names.h"

#include <linux/capability.h>
#include <sys/resource.h>

#include <set>
#include <string>

#include <gtest/gtest.h>

namespace cask::oci {
namespace {

TEST(Names, CapabilitiesMatchKernelHeaders) {
  EXPECT_EQ(CapabilityNames().size(), static_cast<size_t>(CAP_LAST_CAP + 1));
  EXPECT_EQ(CapabilityNumber("CAP_CHOWN"), CAP_CHOWN);
  EXPECT_EQ(CapabilityNumber("CAP_NET_BIND_SERVICE"), CAP_NET_BIND_SERVICE);
  EXPECT_EQ(CapabilityNumber("CAP_SYS_ADMIN"), CAP_SYS_ADMIN);
  EXPECT_EQ(CapabilityNumber("CAP_MKNOD"), CAP_MKNOD);
  EXPECT_EQ(CapabilityNumber("CAP_AUDIT_WRITE"), CAP_AUDIT_WRITE);
  EXPECT_EQ(CapabilityNumber("CAP_SETFCAP"), CAP_SETFCAP);
  EXPECT_EQ(CapabilityNumber("CAP_SYSLOG"), CAP_SYSLOG);
  EXPECT_EQ(CapabilityNumber("CAP_AUDIT_READ"), CAP_AUDIT_READ);
  EXPECT_EQ(CapabilityNumber("CAP_PERFMON"), CAP_PERFMON);
  EXPECT_EQ(CapabilityNumber("CAP_BPF"), CAP_BPF);
  EXPECT_EQ(CapabilityNumber("CAP_CHECKPOINT_RESTORE"), CAP_CHECKPOINT_RESTORE);
  EXPECT_FALSE(CapabilityNumber("CAP_FOO"));
  EXPECT_FALSE(CapabilityNumber("chown"));
  EXPECT_FALSE(CapabilityNumber(""));
  std::set<std::string_view> unique(CapabilityNames().begin(), CapabilityNames().end());
  EXPECT_EQ(unique.size(), CapabilityNames().size());
}

TEST(Names, RlimitsMatchKernelHeaders) {
  EXPECT_EQ(RlimitNames().size(), static_cast<size_t>(RLIMIT_NLIMITS));
  EXPECT_EQ(RlimitNumber("RLIMIT_CPU"), RLIMIT_CPU);
  EXPECT_EQ(RlimitNumber("RLIMIT_NOFILE"), RLIMIT_NOFILE);
  EXPECT_EQ(RlimitNumber("RLIMIT_NPROC"), RLIMIT_NPROC);
  EXPECT_EQ(RlimitNumber("RLIMIT_MEMLOCK"), RLIMIT_MEMLOCK);
  EXPECT_EQ(RlimitNumber("RLIMIT_AS"), RLIMIT_AS);
  EXPECT_EQ(RlimitNumber("RLIMIT_RTTIME"), RLIMIT_RTTIME);
  EXPECT_FALSE(RlimitNumber("NOFILE"));
}

TEST(Names, Sets) {
  for (auto t : {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}) {
    EXPECT_TRUE(IsNamespaceType(t)) << t;
  }
  EXPECT_FALSE(IsNamespaceType("net"));
  EXPECT_TRUE(IsSeccompAction("SCMP_ACT_NOTIFY"));
  EXPECT_FALSE(IsSeccompAction("SCMP_ACT_DENY"));
  EXPECT_TRUE(IsSeccompOperator("SCMP_CMP_MASKED_EQ"));
  EXPECT_FALSE(IsSeccompOperator("SCMP_CMP_IN"));
  EXPECT_TRUE(IsSeccompArch("SCMP_ARCH_AARCH64"));
  EXPECT_TRUE(IsSeccompFlag("SECCOMP_FILTER_FLAG_LOG"));
  EXPECT_TRUE(IsRootfsPropagation(""));
  EXPECT_FALSE(IsRootfsPropagation("rshared "));
}

}  // namespace
}  // namespace cask::oci
