#include "lib/sandbox/pod_netns.h"

#include <gtest/gtest.h>

namespace cask::sandbox {
namespace {

oci::Spec WithNamespaces(std::vector<oci::Namespace> ns) {
  oci::Spec s;
  s.linux = oci::Linux{};
  s.linux->namespaces = std::move(ns);
  return s;
}

TEST(PodNetnsPath, CriPodGivesItsNetns) {
  auto p = PodNetnsPath(WithNamespaces({{"pid", ""}, {"ipc", ""}, {"uts", ""}, {"mount", ""},
                                        {"network", "/var/run/netns/cni-1234"}}));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(*p, "/var/run/netns/cni-1234");
}

TEST(PodNetnsPath, NewEmptyNetnsGivesNoPath) {
  auto p = PodNetnsPath(WithNamespaces({{"pid", ""}, {"ipc", ""}, {"network", ""}}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "");
}

void ExpectRefused(const oci::Spec& s, const std::string& word) {
  auto p = PodNetnsPath(s);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(p.error().ToString().find(word), std::string::npos) << p.error().ToString();
}

TEST(PodNetnsPath, RefusesHostNamespaces) {
  // hostNetwork: containerd drops the network (and uts) entries.
  ExpectRefused(WithNamespaces({{"pid", ""}, {"ipc", ""}, {"mount", ""}}), "hostNetwork");
  ExpectRefused(WithNamespaces({{"network", ""}, {"ipc", ""}}), "hostPID");
  ExpectRefused(WithNamespaces({{"network", ""}, {"pid", ""}}), "hostIPC");
  ExpectRefused(WithNamespaces({{"network", ""}, {"pid", "/proc/1/ns/pid"}, {"ipc", ""}}), "PID");
  ExpectRefused(WithNamespaces({{"network", ""}, {"pid", ""}, {"ipc", "/proc/1/ns/ipc"}}), "IPC");
  ExpectRefused(oci::Spec{}, "network");
  // A path that is the host's own network namespace.
  ExpectRefused(WithNamespaces({{"network", "/proc/self/ns/net"}, {"pid", ""}, {"ipc", ""}}), "hostNetwork");
}

TEST(RefuseHostNamespacesInJson, ReadsWhatDoesNotValidate) {
  // containerd's hostNetwork sandbox: no network or uts entry, a hostname.
  auto st = RefuseHostNamespacesInJson(
      R"({"hostname":"h","linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"mount"}]}})");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().ToString().find("hostNetwork"), std::string::npos);
  EXPECT_TRUE(RefuseHostNamespacesInJson(
                  R"({"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"network"}]}})").ok());
  // A pod container's namespaces are its sandbox's business.
  EXPECT_TRUE(RefuseHostNamespacesInJson(
                  R"({"annotations":{"io.kubernetes.cri.container-type":"container"},"linux":{"namespaces":[]}})").ok());
  EXPECT_TRUE(RefuseHostNamespacesInJson("not json").ok());
  // No namespace list to read: the spec parser's error says what is wrong.
  EXPECT_TRUE(RefuseHostNamespacesInJson(R"({"annotations":{"a":1}})").ok());
  EXPECT_TRUE(RefuseHostNamespacesInJson(R"({"linux":{"namespaces":[{"path":"/x"}]}})").ok());
}

}  // namespace
}  // namespace cask::sandbox
