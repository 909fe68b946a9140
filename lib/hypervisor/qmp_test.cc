#include "lib/hypervisor/qmp.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "lib/base/fs.h"

namespace cask::hypervisor {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// A scripted QMP server on one end of a socketpair: for each expected
// request line it checks the command name and writes the given reply lines.
struct Step {
  std::string expect_execute;  // "" = send `reply` without reading
  std::string reply;           // raw lines, each ending in \n
  bool close_after = false;
};

class FakeQmp {
 public:
  explicit FakeQmp(std::vector<Step> steps) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_.Reset(sv[0]);
    server_.Reset(sv[1]);
    thread_ = std::thread([this, steps = std::move(steps)] { Run(steps); });
  }
  ~FakeQmp() {
    if (thread_.joinable()) thread_.join();
  }
  UniqueFd TakeClient() { return std::move(client_); }
  std::vector<std::string> requests() {
    if (thread_.joinable()) thread_.join();
    return requests_;
  }

 private:
  void Run(const std::vector<Step>& steps) {
    std::string buf;
    for (const auto& s : steps) {
      if (!s.expect_execute.empty()) {
        size_t nl;
        while ((nl = buf.find('\n')) == std::string::npos) {
          char c[512];
          ssize_t n = ::read(server_.get(), c, sizeof c);
          if (n <= 0) return;
          buf.append(c, static_cast<size_t>(n));
        }
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        requests_.push_back(line);
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_object() || j.value("execute", "") != s.expect_execute) return;
      }
      if (!s.reply.empty()) (void)WriteAll(server_.get(), s.reply);
      if (s.close_after) {
        server_.Reset();
        return;
      }
    }
  }

  UniqueFd client_, server_;
  std::thread thread_;
  std::vector<std::string> requests_;
};

const char* kGreeting = "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}\n";

TEST(Qmp, HandshakeExecuteAndEvents) {
  FakeQmp fake({
      {"", kGreeting},
      {"qmp_capabilities", "{\"return\": {}}\n"},
      {"query-status",
       "{\"event\": \"RESUME\", \"timestamp\": {}}\n{\"return\": {\"status\": \"running\", \"running\": true}}\n"},
  });
  auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  auto r = c->Execute("query-status", nullptr, milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ((*r)["status"], "running");
  auto events = c->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["event"], "RESUME");
  EXPECT_TRUE(c->TakeEvents().empty());
  auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(reqs[1]), nlohmann::json({{"execute", "query-status"}}));
}

TEST(Qmp, ArgumentsAreSent) {
  FakeQmp fake({
      {"", kGreeting},
      {"qmp_capabilities", "{\"return\": {}}\n"},
      {"device_del", "{\"return\": {}}\n"},
  });
  auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Execute("device_del", {{"id", "blk0"}}, milliseconds(5000)).ok());
  auto reqs = fake.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(reqs[1]),
            nlohmann::json({{"execute", "device_del"}, {"arguments", {{"id", "blk0"}}}}));
}

TEST(Qmp, ErrorRepliesMapToCodes) {
  FakeQmp fake({
      {"", kGreeting},
      {"qmp_capabilities", "{\"return\": {}}\n"},
      {"nosuch", "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nosuch has not been found\"}}\n"},
      {"device_del", "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'x' not found\"}}\n"},
      {"cont", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"bad state\"}}\n"},
  });
  auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
  ASSERT_TRUE(c.ok());
  auto a = c->Execute("nosuch", nullptr, milliseconds(5000));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code(), Code::kUnimplemented);
  EXPECT_THAT(a.error().ToString(), HasSubstr("nosuch has not been found"));
  auto b = c->Execute("device_del", {{"id", "x"}}, milliseconds(5000));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), Code::kNotFound);
  auto d = c->Execute("cont", nullptr, milliseconds(5000));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(d.error().ToString(), HasSubstr("bad state (GenericError)"));
}

TEST(Qmp, QuitToleratesCloseWithoutReply) {
  FakeQmp fake({
      {"", kGreeting},
      {"qmp_capabilities", "{\"return\": {}}\n"},
      {"quit", "", /*close_after=*/true},
  });
  auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->Quit(milliseconds(5000)).ok());
}

TEST(Qmp, EofBeforeReplyIsUnavailable) {
  FakeQmp fake({
      {"", kGreeting},
      {"qmp_capabilities", "{\"return\": {}}\n"},
      {"query-status", "", /*close_after=*/true},
  });
  auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
  ASSERT_TRUE(c.ok());
  auto r = c->Execute("query-status", nullptr, milliseconds(5000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
}

TEST(Qmp, BadGreetingAndMalformedReplies) {
  {
    FakeQmp fake(std::vector<Step>{{"", "{\"hello\": 1}\n"}});
    auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
    ASSERT_FALSE(c.ok());
    EXPECT_THAT(c.error().ToString(), HasSubstr("greeting"));
  }
  {
    FakeQmp fake({{"", kGreeting}, {"qmp_capabilities", "{\"return\": {}}\n"}, {"x", "not json\n"}});
    auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
    ASSERT_TRUE(c.ok());
    auto r = c->Execute("x", nullptr, milliseconds(5000));
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.error().ToString(), HasSubstr("malformed"));
  }
}

TEST(Qmp, TimeoutWhenNoReply) {
  FakeQmp fake({{"", kGreeting}, {"qmp_capabilities", "{\"return\": {}}\n"}, {"slow", ""}});
  auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
  ASSERT_TRUE(c.ok());
  auto t0 = std::chrono::steady_clock::now();
  auto r = c->Execute("slow", nullptr, milliseconds(100));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kDeadlineExceeded);
  // Without the timeout the call never ends; a loaded sanitizer build is slow.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  c->Close();
}

TEST(Qmp, OverlongLineIsRejected) {
  std::string big = "{\"return\": \"" + std::string(QmpClient::kMaxLine + 10, 'x');  // never ends
  FakeQmp fake({{"", kGreeting}, {"qmp_capabilities", "{\"return\": {}}\n"}, {"big", big, true}});
  auto c = QmpClient::Handshake(fake.TakeClient(), milliseconds(5000));
  ASSERT_TRUE(c.ok());
  auto r = c->Execute("big", nullptr, milliseconds(5000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kResourceExhausted);
}

TEST(Qmp, ConnectTimesOutOnMissingSocket) {
  auto r = QmpClient::Connect("/nonexistent-dir-cask/qmp.sock", milliseconds(50));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kDeadlineExceeded);
  EXPECT_THAT(r.error().ToString(), HasSubstr("/nonexistent-dir-cask/qmp.sock"));
}

}  // namespace
}  // namespace cask::hypervisor
