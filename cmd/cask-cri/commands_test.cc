#include "cmd/cask-cri/commands.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace cask::cri {
namespace {

namespace v1 = runtime::v1;

TEST(CriCommands, PsShowsRunningUnlessAllOrState) {
  Options o;
  auto r = ContainersRequest(o);
  ASSERT_TRUE(r.filter().has_state());
  EXPECT_EQ(r.filter().state().state(), v1::CONTAINER_RUNNING);
  o.all = true;
  EXPECT_FALSE(ContainersRequest(o).filter().has_state());
  // CONTAINER_CREATED is 0: it must still be sent as a state filter.
  o.state = "created";
  r = ContainersRequest(o);
  ASSERT_TRUE(r.filter().has_state());
  EXPECT_EQ(r.filter().state().state(), v1::CONTAINER_CREATED);
  o.pod_id = "abc";
  o.labels = {{"a", "b"}};
  r = ContainersRequest(o);
  EXPECT_EQ(r.filter().pod_sandbox_id(), "abc");
  EXPECT_EQ(r.filter().label_selector().at("a"), "b");
}

TEST(CriCommands, PodsFilterReadyIsSentAlthoughZero) {
  Options o;
  EXPECT_FALSE(PodsRequest(o).filter().has_state());
  o.state = "ready";
  auto r = PodsRequest(o);
  ASSERT_TRUE(r.filter().has_state());
  EXPECT_EQ(r.filter().state().state(), v1::SANDBOX_READY);
}

TEST(CriCommands, UpdateSendsOnlyWhatWasGiven) {
  Options o;
  o.memory = 128 << 20;
  o.cpuset_cpus = "0";
  auto r = UpdateRequest(o, "c1");
  EXPECT_EQ(r.container_id(), "c1");
  EXPECT_EQ(r.linux().memory_limit_in_bytes(), 128 << 20);
  EXPECT_EQ(r.linux().cpuset_cpus(), "0");
  EXPECT_EQ(r.linux().cpu_quota(), 0);
  EXPECT_EQ(r.linux().cpu_period(), 0);
}

TEST(CriCommands, StatsFilter) {
  Options o;
  o.ids = {"c1"};
  o.pod_id = "p1";
  auto r = StatsRequest(o);
  EXPECT_EQ(r.filter().id(), "c1");
  EXPECT_EQ(r.filter().pod_sandbox_id(), "p1");
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/cask-cri-test.XXXXXX";
    ASSERT_NE(::mkdtemp(t), nullptr);
    dir_ = t;
  }
  void TearDown() override { (void)std::system(("rm -rf " + dir_).c_str()); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  std::string dir_;
};

using CriRequestFiles = TempDir;

TEST_F(CriRequestFiles, RunpReadsThePodConfigAndHandler) {
  Options o;
  o.pod_config = Write("pod.json", R"({"metadata": {"name": "p", "namespace": "n", "uid": "u"}})");
  o.runtime_handler = "cask";
  auto r = RunPodRequest(o);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->config().metadata().name(), "p");
  EXPECT_EQ(r->runtime_handler(), "cask");

  o.pod_config = Write("nometa.json", R"({"hostname": "h"})");
  r = RunPodRequest(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("metadata"), std::string::npos);

  o.pod_config = Write("typo.json", R"({"metadata": {"name": "p"}, "hostnmae": "h"})");
  r = RunPodRequest(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("pod config"), std::string::npos) << r.error().ToString();
  EXPECT_NE(r.error().ToString().find("hostnmae"), std::string::npos) << r.error().ToString();
}

TEST_F(CriRequestFiles, CreateNeedsMetadataAndImage) {
  Options o;
  o.pod_id = "p1";
  o.pod_config = Write("pod.json", R"({"metadata": {"name": "p"}})");
  o.container_config = Write("c.json", R"({"metadata": {"name": "c"}, "image": {"image": "busybox"}})");
  auto r = CreateRequest(o);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->pod_sandbox_id(), "p1");
  EXPECT_EQ(r->sandbox_config().metadata().name(), "p");
  EXPECT_EQ(r->config().image().image(), "busybox");
  o.container_config = Write("noimg.json", R"({"metadata": {"name": "c"}})");
  r = CreateRequest(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("image"), std::string::npos);
}

TEST(CriCommands, InspectDocumentEmbedsJsonInfo) {
  v1::PodSandboxStatus st;
  st.set_id("p1");
  google::protobuf::Map<std::string, std::string> info;
  info["info"] = R"({"pid": 42, "runtimeSpec": {"hostname": "h"}})";
  info["plain"] = "not json {";
  auto doc = nlohmann::json::parse(InspectDocument(st, "status", info));
  EXPECT_EQ(doc["status"]["id"], "p1");
  EXPECT_EQ(doc["status"]["state"], "SANDBOX_READY");  // zero values are printed
  EXPECT_EQ(doc["info"]["info"]["pid"], 42);
  EXPECT_EQ(doc["info"]["plain"], "not json {");
}

TEST(CriCommands, UnreachableEndpointFailsWithTheCode) {
  Options o;
  o.command = Command::kVersion;
  o.endpoint = "unix:///nonexistent/cask-cri-test.sock";
  o.timeout_s = 5;
  char* buf = nullptr;
  size_t len = 0;
  std::FILE* err = ::open_memstream(&buf, &len);
  int rc = cri::Run(o, stdout, err);
  std::fclose(err);
  std::string text(buf, len);
  std::free(buf);
  EXPECT_EQ(rc, kExitCallFailed);
  EXPECT_NE(text.find("cask-cri: version: code UNAVAILABLE (14)"), std::string::npos) << text;
}

}  // namespace
}  // namespace cask::cri
