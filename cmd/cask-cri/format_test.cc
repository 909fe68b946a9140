#include "cmd/cask-cri/format.h"

#include <gtest/gtest.h>

namespace cask::cri {
namespace {

namespace v1 = runtime::v1;
constexpr int64_t kSec = 1000000000;

TEST(CriFormat, TablePadsColumnsWithoutTrailingSpaces) {
  Table t({"A", "LONG HEADER", "C"});
  t.Add({"xxxx", "y", ""});
  EXPECT_EQ(t.Render(), "A      LONG HEADER   C\nxxxx   y\n");
}

TEST(CriFormat, Age) {
  int64_t now = 1000 * kSec;
  EXPECT_EQ(Age(0, now), "-");
  EXPECT_EQ(Age(now, now), "just now");
  EXPECT_EQ(Age(now - 1 * kSec, now), "1 second ago");
  EXPECT_EQ(Age(now - 59 * kSec, now), "59 seconds ago");
  EXPECT_EQ(Age(now - 120 * kSec, now), "2 minutes ago");
  EXPECT_EQ(Age(now - 3600 * kSec, now), "1 hour ago");
  EXPECT_EQ(Age(now - 3 * 86400 * kSec - 5, now + 3 * 86400 * kSec - 3 * 86400 * kSec), "3 days ago");
  EXPECT_EQ(Age(now + 5 * kSec, now), "just now");  // a clock step backwards
}

TEST(CriFormat, HumanBytes) {
  EXPECT_EQ(HumanBytes(0), "0B");
  EXPECT_EQ(HumanBytes(1023), "1023B");
  EXPECT_EQ(HumanBytes(1536), "1.5KiB");
  EXPECT_EQ(HumanBytes(64ull << 20), "64MiB");
  EXPECT_EQ(HumanBytes(3ull << 40), "3.0TiB");
  EXPECT_EQ(HumanBytes(5000ull << 40), "5000TiB");
}

TEST(CriFormat, ShortIdAndStates) {
  EXPECT_EQ(ShortId("0123456789abcdef", false), "0123456789abc");
  EXPECT_EQ(ShortId("0123456789abcdef", true), "0123456789abcdef");
  EXPECT_EQ(ShortId("abc", false), "abc");
  EXPECT_EQ(PodStateName(v1::SANDBOX_READY), "Ready");
  EXPECT_EQ(PodStateName(v1::SANDBOX_NOTREADY), "NotReady");
  EXPECT_EQ(ContainerStateName(v1::CONTAINER_EXITED), "Exited");
  EXPECT_EQ(ContainerStateName(static_cast<v1::ContainerState>(9)), "Unknown(9)");
}

TEST(CriFormat, RpcErrorShowsCodeNameNumberAndMessage) {
  Error e(Code::kUnknown, "failed to get sandbox runtime: no runtime for \"nope\" is configured");
  EXPECT_EQ(FormatRpcError(e),
            "code UNKNOWN (2): failed to get sandbox runtime: no runtime for \"nope\" is configured");
  EXPECT_EQ(FormatRpcError(Error::NotFound("x")), "code NOT_FOUND (5): x");
}

TEST(CriFormat, RepoTag) {
  EXPECT_EQ(RepoTag("docker.io/library/busybox:latest"),
            (std::pair<std::string, std::string>{"docker.io/library/busybox", "latest"}));
  EXPECT_EQ(RepoTag("localhost:5000/pause"), (std::pair<std::string, std::string>{"localhost:5000/pause", "<none>"}));
  EXPECT_EQ(RepoTag("localhost:5000/pause:3.6"), (std::pair<std::string, std::string>{"localhost:5000/pause", "3.6"}));
  EXPECT_EQ(RepoTag("busybox@sha256:abc"), (std::pair<std::string, std::string>{"busybox", "<none>"}));
}

TEST(CriFormat, PodsTable) {
  v1::ListPodSandboxResponse r;
  auto* p = r.add_items();
  p->set_id("2f1a3b4c5d6e7f8091a2b3c4d5e6f708");
  p->mutable_metadata()->set_name("web");
  p->mutable_metadata()->set_namespace_("default");
  p->set_state(v1::SANDBOX_NOTREADY);
  p->set_created_at(10 * kSec);
  p->set_runtime_handler("cask");
  auto* q = r.add_items();
  q->set_id("ffff");
  q->mutable_metadata()->set_name("db");
  EXPECT_EQ(PodsTable(r, 70 * kSec, false),
            "POD ID          CREATED        STATE      NAME   NAMESPACE   ATTEMPT   RUNTIME\n"
            "2f1a3b4c5d6e7   1 minute ago   NotReady   web    default     0         cask\n"
            "ffff            -              Ready      db                 0         (default)\n");
}

TEST(CriFormat, ContainersTableShortensImageIds) {
  v1::ListContainersResponse r;
  auto* c = r.add_containers();
  c->set_id("c0ffee0000000000000");
  c->set_pod_sandbox_id("beef000000000000000");
  c->mutable_image()->set_image("sha256:0123456789abcdef0123");
  c->set_state(v1::CONTAINER_RUNNING);
  c->mutable_metadata()->set_name("app");
  std::string t = ContainersTable(r, 0, false);
  EXPECT_NE(t.find("0123456789abc "), std::string::npos) << t;
  EXPECT_EQ(t.find("sha256:"), std::string::npos) << t;
  EXPECT_NE(t.find("Running"), std::string::npos);
  EXPECT_NE(t.find("beef000000000"), std::string::npos);
  EXPECT_NE(ContainersTable(r, 0, true).find("sha256:0123456789abcdef0123"), std::string::npos);
}

TEST(CriFormat, ImagesTableOneRowPerTag) {
  v1::ListImagesResponse r;
  auto* i = r.add_images();
  i->set_id("sha256:aaaabbbbccccddddeeee");
  i->add_repo_tags("docker.io/library/busybox:latest");
  i->add_repo_tags("localhost/bb:1");
  i->set_size(1 << 20);
  auto* j = r.add_images();
  j->set_id("sha256:1111");
  j->add_repo_digests("localhost/x@sha256:99");
  EXPECT_EQ(ImagesTable(r, false),
            "IMAGE                       TAG      IMAGE ID        SIZE\n"
            "docker.io/library/busybox   latest   aaaabbbbccccd   1.0MiB\n"
            "localhost/bb                1        aaaabbbbccccd   1.0MiB\n"
            "localhost/x                 <none>   1111            0B\n");
}

TEST(CriFormat, StatsTableShowsDashesForWhatIsMissing) {
  v1::ListContainerStatsResponse r;
  auto* s = r.add_stats();
  s->mutable_attributes()->set_id("c1");
  s->mutable_attributes()->mutable_metadata()->set_name("app");
  s->mutable_cpu()->mutable_usage_core_nano_seconds()->set_value(1500000000);
  s->mutable_cpu()->mutable_usage_nano_cores()->set_value(250000000);  // a quarter core
  s->mutable_memory()->mutable_working_set_bytes()->set_value(2 << 20);
  auto* e = r.add_stats();
  e->mutable_attributes()->set_id("c2");
  EXPECT_EQ(StatsTable(r, false),
            "CONTAINER   NAME   CPU %   CPU TIME   MEM      DISK   INODES\n"
            "c1          app    25.00   1.500s     2.0MiB   -      -\n"
            "c2                 -       -          -        -      -\n");
}

TEST(CriFormat, VersionText) {
  v1::VersionResponse r;
  r.set_version("0.1.0");
  r.set_runtime_name("containerd");
  r.set_runtime_version("1.6.20~ds1");
  r.set_runtime_api_version("v1");
  EXPECT_EQ(VersionText(r),
            "Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  1.6.20~ds1\nRuntimeApiVersion:  v1\n");
}

}  // namespace
}  // namespace cask::cri
