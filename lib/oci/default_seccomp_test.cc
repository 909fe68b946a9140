#include "lib/oci/default_seccomp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "lib/oci/parse.h"

namespace cask::oci {
namespace {

DeviceCgroup Rule(bool allow, std::string type, std::string access, std::optional<int64_t> major = {},
                    std::optional<int64_t> minor = {}) {
  DeviceCgroup d;
  d.allow = allow;
  d.type = std::move(type);
  d.access = std::move(access);
  d.major = major;
  d.minor = minor;
  return d;
}

// Every syscall name the profile allows without argument conditions.
std::vector<std::string> Unconditional(const Seccomp& p) {
  std::vector<std::string> out;
  for (const auto& s : p.syscalls) {
    if (s.action != "SCMP_ACT_ALLOW" || !s.args.empty()) continue;
    out.insert(out.end(), s.names.begin(), s.names.end());
  }
  return out;
}

bool Has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

Spec WithCaps(std::vector<std::string> bounding) {
  Spec s = DefaultSpec({"sh"}, false);
  s.process->capabilities->bounding = std::move(bounding);
  return s;
}

TEST(DefaultSeccomp, DeniesWithEpermAndAllowsTheCommonSet) {
  Seccomp p = DefaultSeccompProfile(WithCaps({"CAP_CHOWN"}));
  EXPECT_EQ(p.default_action, "SCMP_ACT_ERRNO");
  EXPECT_EQ(p.default_errno_ret, static_cast<uint32_t>(EPERM));
  auto allowed = Unconditional(p);
  for (const char* ok : {"read", "write", "openat", "execve", "exit_group", "futex", "mmap", "rt_sigreturn"}) {
    EXPECT_TRUE(Has(allowed, ok)) << ok;
  }
  for (const char* no : {"keyctl", "add_key", "request_key", "unshare", "setns", "mount", "ptrace", "bpf",
                         "kexec_load", "userfaultfd", "io_uring_setup", "init_module", "reboot", "clone",
                         "open_tree", "move_mount", "syslog"}) {
    EXPECT_FALSE(Has(allowed, no)) << no;
  }
#if defined(__x86_64__)
  EXPECT_TRUE(Has(allowed, "arch_prctl"));
  EXPECT_EQ(p.architectures.front(), "SCMP_ARCH_X86_64");
#endif
}

TEST(DefaultSeccomp, CloneWithoutNamespaceFlagsAndClone3EnosysWithoutSysAdmin) {
  Seccomp p = DefaultSeccompProfile(WithCaps({}));
  bool clone = false, clone3 = false;
  for (const auto& s : p.syscalls) {
    if (s.names == std::vector<std::string>{"clone"}) {
      clone = true;
      ASSERT_EQ(s.args.size(), 1u);
      EXPECT_EQ(s.args[0].op, "SCMP_CMP_MASKED_EQ");
      EXPECT_EQ(s.args[0].value_two, 0u);
      EXPECT_NE(s.args[0].value & 0x10000000u, 0u);  // CLONE_NEWUSER is masked
      EXPECT_NE(s.args[0].value & 0x00020000u, 0u);  // CLONE_NEWNS
    }
    if (s.names == std::vector<std::string>{"clone3"}) {
      clone3 = true;
      EXPECT_EQ(s.action, "SCMP_ACT_ERRNO");
      EXPECT_EQ(s.errno_ret, static_cast<uint32_t>(ENOSYS));
    }
  }
  EXPECT_TRUE(clone);
  EXPECT_TRUE(clone3);
}

TEST(DefaultSeccomp, CapabilitiesOpenTheirSyscalls) {
  Seccomp p = DefaultSeccompProfile(WithCaps({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_CHROOT"}));
  auto allowed = Unconditional(p);
  for (const char* ok : {"mount", "umount2", "unshare", "setns", "clone", "clone3", "ptrace", "chroot"}) {
    EXPECT_TRUE(Has(allowed, ok)) << ok;
  }
  EXPECT_FALSE(Has(allowed, "keyctl"));
  EXPECT_FALSE(Has(allowed, "reboot"));
  for (const auto& s : p.syscalls) EXPECT_NE(s.names, std::vector<std::string>{"clone3"}) << "no ENOSYS rule";
}

TEST(DefaultSeccomp, AppliedOnlyWhenEnabledAbsentAndNotPrivileged) {
  Spec s = DefaultSpec({"sh"}, false);
  s.linux->seccomp.reset();
  Spec off = s;
  EXPECT_FALSE(ApplyDefaultSeccomp(off, false));
  EXPECT_FALSE(off.linux->seccomp);

  Spec on = s;
  EXPECT_TRUE(ApplyDefaultSeccomp(on, true));
  ASSERT_TRUE(on.linux->seccomp);
  EXPECT_EQ(*on.linux->seccomp, DefaultSeccompProfile(s));

  Spec own = s;
  own.linux->seccomp = Seccomp();
  own.linux->seccomp->default_action = "SCMP_ACT_ALLOW";
  EXPECT_FALSE(ApplyDefaultSeccomp(own, true));
  EXPECT_EQ(own.linux->seccomp->default_action, "SCMP_ACT_ALLOW");

  Spec priv = s;
  priv.linux->resources->devices.push_back(Rule(true, "a", "rwm"));
  EXPECT_TRUE(IsPrivileged(priv));
  EXPECT_FALSE(ApplyDefaultSeccomp(priv, true));
  EXPECT_FALSE(priv.linux->seccomp);
}

TEST(DefaultSeccomp, PrivilegedMeansTheLastAllDevicesRuleAllows) {
  Spec s = DefaultSpec({"sh"}, false);  // deny all
  EXPECT_FALSE(IsPrivileged(s));
  s.linux->resources->devices.push_back(Rule(true, "c", "rwm"));
  EXPECT_FALSE(IsPrivileged(s));  // every char device is not every device
  s.linux->resources->devices.push_back(Rule(true, "", "rwm"));
  EXPECT_TRUE(IsPrivileged(s));
  s.linux->resources->devices.push_back(Rule(false, "a", "rwm"));
  EXPECT_FALSE(IsPrivileged(s));
  s.linux->resources->devices.push_back(Rule(true, "a", "r"));
  EXPECT_FALSE(IsPrivileged(s));  // read-only for all is not all
}

}  // namespace
}  // namespace cask::oci
