#include "cmd/cask-agent/pod_namespaces.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cask::agent {
namespace {

using Annotations = std::map<std::string, std::string>;

const Annotations kSandbox = {{"io.kubernetes.cri.container-type", "sandbox"},
                              {"io.kubernetes.cri.sandbox-id", "pod1"}};
const Annotations kMember = {{"io.kubernetes.cri.container-type", "container"},
                             {"io.kubernetes.cri.sandbox-id", "pod1"}};

oci::Spec SpecWith(const Annotations& a) {
  oci::Spec s;
  s.annotations = a;
  return s;
}

ino_t Inode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

ino_t Inode(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return st.st_ino;
}

TEST(PodMembership, FromCriAndCrioAnnotations) {
  auto m = PodMembershipOf(kSandbox, "pod1");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->role, PodRole::kSandbox);
  m = PodMembershipOf(kMember, "c1");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->role, PodRole::kPodContainer);
  EXPECT_EQ(m->sandbox_id, "pod1");
  m = PodMembershipOf({{"io.kubernetes.cri-o.ContainerType", "container"}, {"io.kubernetes.cri-o.SandboxID", "p"}},
                      "c");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sandbox_id, "p");
  m = PodMembershipOf({}, "c");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->role, PodRole::kStandalone);
  EXPECT_FALSE(PodMembershipOf({{"io.kubernetes.cri.container-type", "pause"}}, "c").ok());
  EXPECT_FALSE(PodMembershipOf({{"io.kubernetes.cri.container-type", "container"}}, "c").ok());
  EXPECT_FALSE(PodMembershipOf(kMember, "pod1").ok());  // names itself
}

TEST(HostNamespacePath, OnlyTheShapesCriSends) {
  for (const char* ok : {"/var/run/netns/cni-8d1e", "/run/netns/foo", "/proc/1234/ns/net", "/proc/1/ns/ipc",
                         "/var/lib/containerd/io.containerd.grpc.v1.cri/netns/cni-1"}) {
    EXPECT_TRUE(IsHostNamespacePath(ok)) << ok;
  }
  for (const char* bad : {"", "netns/foo", "/proc/self/ns/net", "/proc/1/ns/../../etc/passwd", "/etc/passwd",
                          "/var/run/netns/", "/var/run/netns/../../x", "/proc/12/ns/net/x", "/var/run//netns/a"}) {
    EXPECT_FALSE(IsHostNamespacePath(bad)) << bad;
  }
}

TEST(PodNamespaces, StandaloneAndUnknownPathsAreRefused) {
  PodNamespaces pods;
  auto r = pods.ResolverFor("c1", SpecWith({}));
  ASSERT_TRUE(r.ok());
  auto t = (*r)(oci::Namespace{"network", "/var/run/netns/foo"});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(t.error().ToString().find("belongs to no pod"), std::string::npos) << t.error().ToString();

  r = pods.ResolverFor("c1", SpecWith(kMember));
  ASSERT_TRUE(r.ok());
  t = (*r)(oci::Namespace{"network", "/etc/shadow"});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code(), Code::kInvalidArgument);
}

TEST(PodNamespaces, SandboxStaysInTheGuestNetworkAndRefusesOtherPaths) {
  PodNamespaces pods;
  auto r = pods.ResolverFor("pod1", SpecWith(kSandbox));
  ASSERT_TRUE(r.ok());
  auto net = (*r)(oci::Namespace{"network", "/var/run/netns/cni-1"});
  ASSERT_TRUE(net.ok()) << net.error().ToString();
  EXPECT_FALSE(net->fd.valid());
  EXPECT_FALSE((*r)(oci::Namespace{"ipc", "/proc/77/ns/ipc"}).ok());
}

TEST(PodNamespaces, PodContainerJoinsItsSandboxesNamespaces) {
  // A stand-in for the sandbox's init, in its own uts namespace when the
  // test may make one (root), so the mapping is visible in the inode.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (geteuid() == 0) (void)unshare(CLONE_NEWUTS);
    char c = 1;
    (void)!write(ready[1], &c, 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  close(ready[1]);

  PodNamespaces pods;
  auto r = pods.ResolverFor("c1", SpecWith(kMember));
  ASSERT_TRUE(r.ok());
  // No sandbox yet: a clear error.
  auto t = (*r)(oci::Namespace{"uts", "/proc/999/ns/uts"});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().ToString().find("pod sandbox pod1 is not running in this VM"), std::string::npos)
      << t.error().ToString();

  ASSERT_TRUE(pods.Register("pod1", kSandbox, child).ok());
  ASSERT_TRUE(pods.Register("c0", kMember, getpid()).ok());  // not a sandbox: ignored
  t = (*r)(oci::Namespace{"uts", "/proc/999/ns/uts"});
  ASSERT_TRUE(t.ok()) << t.error().ToString();
  ASSERT_TRUE(t->fd.valid());
  EXPECT_EQ(Inode(t->fd.get()), Inode("/proc/" + std::to_string(child) + "/ns/uts"));
  EXPECT_NE(t->what.find("pod1"), std::string::npos);
  t = (*r)(oci::Namespace{"network", "/var/run/netns/cni-1"});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Inode(t->fd.get()), Inode("/proc/" + std::to_string(child) + "/ns/net"));

  // The sandbox's init has exited: refused, even before Forget.
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  t = (*r)(oci::Namespace{"uts", "/proc/999/ns/uts"});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().ToString().find("has exited"), std::string::npos) << t.error().ToString();
  pods.Forget("pod1");
  t = (*r)(oci::Namespace{"uts", "/proc/999/ns/uts"});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().ToString().find("not running"), std::string::npos);
}

}  // namespace
}  // namespace cask::agent
