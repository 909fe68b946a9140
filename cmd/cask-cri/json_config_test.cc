#include "cmd/cask-cri/json_config.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "proto/cri/api.pb.h"

namespace cask::cri {
namespace {

namespace v1 = runtime::v1;

// A pod config as crictl's documentation writes it (proto field names).
constexpr const char* kCrictlPod = R"({
  "metadata": {"name": "web", "namespace": "default", "uid": "u1", "attempt": 1},
  "hostname": "web-host",
  "log_directory": "/var/log/pods/web",
  "dns_config": {"servers": ["10.96.0.10"], "searches": ["svc.local"], "options": ["ndots:5"]},
  "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": 8080}],
  "labels": {"app": "web", "Log_Directory": "kept as is"},
  "annotations": {"io.cask.vcpus": "2"},
  "linux": {
    "cgroup_parent": "/kubepods",
    "security_context": {"namespace_options": {"network": 2, "pid": "CONTAINER"},
                         "run_as_user": {"value": 1000}},
    "sysctls": {"net.ipv4.ip_forward": "1"}
  }
})";

TEST(CriJson, ReadsCrictlFieldNames) {
  v1::PodSandboxConfig c;
  auto st = MessageFromJson(kCrictlPod, &c);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(c.metadata().name(), "web");
  EXPECT_EQ(c.metadata().namespace_(), "default");
  EXPECT_EQ(c.metadata().attempt(), 1u);
  EXPECT_EQ(c.log_directory(), "/var/log/pods/web");
  ASSERT_EQ(c.port_mappings_size(), 1);
  EXPECT_EQ(c.port_mappings(0).host_port(), 8080);
  EXPECT_EQ(c.dns_config().searches(0), "svc.local");
  // Map keys are data: not renamed even when they look like a field.
  EXPECT_EQ(c.labels().at("Log_Directory"), "kept as is");
  EXPECT_EQ(c.annotations().at("io.cask.vcpus"), "2");
  const auto& ns = c.linux().security_context().namespace_options();
  EXPECT_EQ(ns.network(), v1::NODE);         // enum as a number (Go's form)
  EXPECT_EQ(ns.pid(), v1::CONTAINER);        // enum as a name (protobuf's form)
  EXPECT_EQ(c.linux().security_context().run_as_user().value(), 1000);
  EXPECT_EQ(c.linux().sysctls().at("net.ipv4.ip_forward"), "1");
}

TEST(CriJson, ReadsProtobufJsonNamesAndAnyCase) {
  v1::PodSandboxConfig c;
  auto st = MessageFromJson(
      R"({"Metadata": {"NAME": "a"}, "logDirectory": "/l", "dnsConfig": {"servers": ["1.1.1.1"]}})", &c);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(c.metadata().name(), "a");
  EXPECT_EQ(c.log_directory(), "/l");
  EXPECT_EQ(c.dns_config().servers(0), "1.1.1.1");
}

TEST(CriJson, ContainerConfigWithMountsAndEnvs) {
  v1::ContainerConfig c;
  auto st = MessageFromJson(R"({
    "metadata": {"name": "app"}, "image": {"image": "docker.io/library/busybox:latest"},
    "command": ["sh", "-c", "echo hi"], "envs": [{"key": "A", "value": "1"}],
    "mounts": [{"container_path": "/data", "host_path": "/tmp/d", "readonly": true, "propagation": 1}],
    "log_path": "app.log",
    "linux": {"resources": {"memory_limit_in_bytes": "67108864", "cpu_quota": 50000}}
  })", &c);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(c.command_size(), 3);
  EXPECT_EQ(c.envs(0).key(), "A");
  EXPECT_TRUE(c.mounts(0).readonly());
  EXPECT_EQ(c.mounts(0).propagation(), v1::PROPAGATION_HOST_TO_CONTAINER);
  EXPECT_EQ(c.linux().resources().memory_limit_in_bytes(), 64 << 20);
  EXPECT_EQ(c.linux().resources().cpu_quota(), 50000);
}

TEST(CriJson, NullLeavesAFieldUnset) {
  v1::PodSandboxConfig c;
  ASSERT_TRUE(MessageFromJson(R"({"metadata": {"name": "a"}, "linux": null, "hostname": null})", &c).ok());
  EXPECT_FALSE(c.has_linux());
}

TEST(CriJson, UnknownFieldIsNamedWithItsPath) {
  v1::PodSandboxConfig c;
  auto st = MessageFromJson(R"({"metadata": {"nmae": "a"}})", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
  EXPECT_NE(st.error().ToString().find("/metadata/nmae"), std::string::npos) << st.error().ToString();
  st = MessageFromJson(R"({"port_mappings": [{}, {"host_prot": 1}]})", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().ToString().find("/port_mappings/1/host_prot"), std::string::npos) << st.error().ToString();
  // Case is ignored, as Go's decoder does: "hostport" is host_port.
  st = MessageFromJson(R"({"port_mappings": [{"hostport": 1}]})", &c);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(c.port_mappings(0).host_port(), 1);
}

TEST(CriJson, SameFieldTwiceIsRefused) {
  v1::PodSandboxConfig c;
  auto st = MessageFromJson(R"({"log_directory": "/a", "logDirectory": "/b"})", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().ToString().find("given twice"), std::string::npos);
}

TEST(CriJson, WrongTypesAreRefused) {
  v1::PodSandboxConfig c;
  EXPECT_FALSE(MessageFromJson("[]", &c).ok());
  EXPECT_FALSE(MessageFromJson(R"({"metadata": "web"})", &c).ok());
  EXPECT_FALSE(MessageFromJson(R"({"port_mappings": {"host_port": 1}})", &c).ok());
  EXPECT_FALSE(MessageFromJson(R"({"hostname": 5})", &c).ok());
  EXPECT_FALSE(MessageFromJson(R"({"metadata": {"attempt": "x"}})", &c).ok());
  EXPECT_FALSE(MessageFromJson(R"({"linux": {"security_context": {"namespace_options": {"network": "HOST"}}}})", &c)
                   .ok());
  auto st = MessageFromJson("{\"metadata\": ", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().ToString().find("not valid JSON"), std::string::npos);
}

TEST(CriJson, MissingFileNamesThePath) {
  v1::PodSandboxConfig c;
  auto st = MessageFromJsonFile("/nonexistent/pod.json", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().ToString().find("/nonexistent/pod.json"), std::string::npos);
}

TEST(CriJson, PrintsProtobufJsonThatReadsBack) {
  v1::PodSandboxConfig c;
  ASSERT_TRUE(MessageFromJson(kCrictlPod, &c).ok());
  std::string text = MessageToJson(c);
  EXPECT_NE(text.find("\"logDirectory\""), std::string::npos);
  v1::PodSandboxConfig back;
  auto st = MessageFromJson(text, &back);
  ASSERT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, c));
}

}  // namespace
}  // namespace cask::cri
