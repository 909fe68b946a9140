#include "lib/shim/grouping.h"

#include <gtest/gtest.h>

namespace cask::shim {
namespace {

TEST(Grouping, NoAnnotationsIsStandalone) {
  auto g = DecideGrouping({{"foo", "bar"}}, "c1");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->kind, ContainerKind::kStandalone);
  EXPECT_EQ(g->group_id, "c1");
}

TEST(Grouping, ContainerdCri) {
  auto sb = DecideGrouping({{"io.kubernetes.cri.container-type", "sandbox"},
                            {"io.kubernetes.cri.sandbox-id", "pod1"}},
                           "pod1");
  ASSERT_TRUE(sb.ok());
  EXPECT_EQ(sb->kind, ContainerKind::kSandbox);
  EXPECT_EQ(sb->group_id, "pod1");
  auto c = DecideGrouping({{"io.kubernetes.cri.container-type", "container"},
                           {"io.kubernetes.cri.sandbox-id", "pod1"}},
                          "app");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, ContainerKind::kPodContainer);
  EXPECT_EQ(c->group_id, "pod1");
}

TEST(Grouping, CriO) {
  auto c = DecideGrouping({{"io.kubernetes.cri-o.ContainerType", "container"},
                           {"io.kubernetes.cri-o.SandboxID", "podX"}},
                          "app");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, ContainerKind::kPodContainer);
  EXPECT_EQ(c->group_id, "podX");
}

TEST(Grouping, Dockershim) {
  auto sb = DecideGrouping({{"io.kubernetes.docker.type", "podsandbox"}}, "p");
  ASSERT_TRUE(sb.ok());
  EXPECT_EQ(sb->kind, ContainerKind::kSandbox);
  auto c = DecideGrouping({{"io.kubernetes.docker.type", "container"}, {"io.kubernetes.sandbox.id", "p"}}, "c");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->group_id, "p");
}

TEST(Grouping, ContainerdKeysWinOverCriO) {
  auto c = DecideGrouping({{"io.kubernetes.cri.container-type", "sandbox"},
                           {"io.kubernetes.cri-o.ContainerType", "container"},
                           {"io.kubernetes.cri-o.SandboxID", "other"}},
                          "me");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, ContainerKind::kSandbox);
  EXPECT_EQ(c->group_id, "me");
}

TEST(Grouping, Errors) {
  auto bad = DecideGrouping({{"io.kubernetes.cri.container-type", "pod"}}, "c");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.error().ToString().find("io.kubernetes.cri.container-type"), std::string::npos);
  EXPECT_NE(bad.error().ToString().find("\"pod\""), std::string::npos);

  auto nosid = DecideGrouping({{"io.kubernetes.cri.container-type", "container"}}, "c");
  ASSERT_FALSE(nosid.ok());
  EXPECT_NE(nosid.error().ToString().find("io.kubernetes.cri.sandbox-id"), std::string::npos);

  EXPECT_FALSE(DecideGrouping({{"io.kubernetes.cri.container-type", "container"},
                               {"io.kubernetes.cri.sandbox-id", "c"}},
                              "c")
                   .ok());
}

TEST(Grouping, ReadAnnotations) {
  auto a = ReadAnnotations(R"({"ociVersion":"1.0.2","annotations":{"a":"1","io.kubernetes.cri.container-type":"sandbox"}})");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size(), 2u);
  EXPECT_EQ(a->at("a"), "1");
  auto none = ReadAnnotations(R"({"ociVersion":"1.0.2"})");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(ReadAnnotations("{not json").ok());
  auto nonstr = ReadAnnotations(R"({"annotations":{"a":1}})");
  ASSERT_FALSE(nonstr.ok());
  EXPECT_NE(nonstr.error().ToString().find("annotations.a"), std::string::npos);
}

}  // namespace
}  // namespace cask::shim
