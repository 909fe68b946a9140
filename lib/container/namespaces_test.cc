#include "lib/container/namespaces.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>

namespace cask::container {
namespace {

oci::Spec WithNamespaces(std::vector<oci::Namespace> ns) {
  oci::Spec s;
  s.linux.emplace();
  s.linux->namespaces = std::move(ns);
  return s;
}

TEST(PlanNamespaces, AHostPathIsRefusedWithoutAResolverAndNeverOpened) {
  // The path exists in this process; it must still not be opened.
  auto plan = PlanNamespaces(WithNamespaces({{"mount", ""}, {"network", "/proc/self/ns/net"}}), nullptr);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(plan.error().ToString().find("/proc/self/ns/net"), std::string::npos) << plan.error().ToString();
}

TEST(PlanNamespaces, PathsGoThroughTheResolver) {
  std::vector<std::string> asked;
  NamespaceResolver resolve = [&](const oci::Namespace& ns) -> Result<NamespaceTarget> {
    asked.push_back(ns.type + "=" + ns.path);
    if (ns.type == "network") return NamespaceTarget{UniqueFd(), "the guest's"};  // stay
    UniqueFd fd(open("/proc/self/ns/ipc", O_RDONLY | O_CLOEXEC));
    return NamespaceTarget{std::move(fd), "ipc of the sandbox"};
  };
  auto plan = PlanNamespaces(WithNamespaces({{"mount", ""},
                                             {"network", "/var/run/netns/cni-1"},
                                             {"ipc", "/proc/4242/ns/ipc"},
                                             {"pid", ""}}),
                             resolve);
  ASSERT_TRUE(plan.ok()) << plan.error().ToString();
  EXPECT_EQ(asked, (std::vector<std::string>{"network=/var/run/netns/cni-1", "ipc=/proc/4242/ns/ipc"}));
  ASSERT_EQ(plan->joins.size(), 1u);
  EXPECT_EQ(plan->joins[0].type, CLONE_NEWIPC);
  EXPECT_TRUE(plan->joins[0].fd.valid());
  EXPECT_EQ(plan->joins[0].what, "ipc of the sandbox");
  // The mapped network namespace is neither joined nor created.
  EXPECT_EQ(plan->unshare_flags & CLONE_NEWNET, 0);
  EXPECT_EQ(plan->unshare_flags & CLONE_NEWIPC, 0);
  EXPECT_NE(plan->unshare_flags & CLONE_NEWNS, 0);
  EXPECT_NE(plan->unshare_flags & CLONE_NEWPID, 0);
}

TEST(PlanNamespaces, AResolverErrorRefusesTheContainer) {
  NamespaceResolver refuse = [](const oci::Namespace&) -> Result<NamespaceTarget> {
    return Error::FailedPrecondition("its pod sandbox p1 is not running in this VM");
  };
  auto plan = PlanNamespaces(WithNamespaces({{"network", "/var/run/netns/foo"}}), refuse);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error().code(), Code::kFailedPrecondition);
  std::string msg = plan.error().ToString();
  EXPECT_NE(msg.find("/var/run/netns/foo"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not running in this VM"), std::string::npos) << msg;
}

}  // namespace
}  // namespace cask::container

namespace cask::container {
namespace {

TEST(Sysctl, OnlyNamespacedSysctlsAreAccepted) {
  EXPECT_TRUE(ValidateSysctl({{"net.ipv4.ip_forward", "1"},
                              {"kernel.shmmax", "1000000"},
                              {"kernel.msgmax", "8192"},
                              {"kernel.sem", "250 32000 32 128"},
                              {"fs.mqueue.msg_max", "10"}})
                  .ok());
  for (const char* key : {"kernel.panic", "vm.overcommit_memory", "kernel.hostname", "fs.file-max", "kernel.semx"}) {
    Status st = ValidateSysctl({{key, "1"}});
    ASSERT_FALSE(st.ok()) << key;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
    EXPECT_NE(st.error().ToString().find(std::string("sysctl ") + key + ": not a namespaced sysctl"),
              std::string::npos)
        << st.error().ToString();
  }
  EXPECT_FALSE(ValidateSysctl({{"net.ipv4.ip_forward", "1\nkernel.panic=1"}}).ok());
  EXPECT_FALSE(ValidateSysctl({{"net/../kernel/panic", "1"}}).ok());
}

}  // namespace
}  // namespace cask::container
