#include "cmd/cask-cri/cli.h"

#include <gtest/gtest.h>

namespace cask::cri {
namespace {

// Parses argv (without the program name) like main does.
Result<Options> Parse(std::vector<std::string> args, const char* env = nullptr) {
  CLI::App app{"test"};
  Options o;
  BuildCli(app, o);
  std::reverse(args.begin(), args.end());  // CLI11 takes them reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return Error::InvalidArgument(std::string("parse: ") + e.what());
  }
  CASK_TRY(Finish(app, o, env));
  return o;
}

TEST(CriCli, EndpointDefaultsToContainerdThenEnvThenFlag) {
  auto o = Parse({"version"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->endpoint, kDefaultEndpoint);
  EXPECT_EQ(o->command, Command::kVersion);

  o = Parse({"version"}, "unix:///tmp/x.sock");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->endpoint, "unix:///tmp/x.sock");

  o = Parse({"-r", "/tmp/y.sock", "version"}, "unix:///tmp/x.sock");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->endpoint, "/tmp/y.sock");
}

TEST(CriCli, GlobalOptionsMayFollowTheSubcommand) {
  auto o = Parse({"pods", "-o", "json", "--runtime-endpoint", "unix:///a.sock"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->output, Output::kJson);
  EXPECT_EQ(o->endpoint, "unix:///a.sock");
  EXPECT_FALSE(Parse({"pods", "-o", "yaml"}).ok());
}

TEST(CriCli, NormalizeEndpoint) {
  EXPECT_EQ(*NormalizeEndpoint("unix:///run/c.sock"), "unix:///run/c.sock");
  EXPECT_EQ(*NormalizeEndpoint("unix:/run/c.sock"), "unix:///run/c.sock");
  EXPECT_EQ(*NormalizeEndpoint("/run/c.sock"), "unix:///run/c.sock");
  EXPECT_FALSE(NormalizeEndpoint("tcp://1.2.3.4:1").ok());
  EXPECT_FALSE(NormalizeEndpoint("unix://relative.sock").ok());
  EXPECT_FALSE(NormalizeEndpoint("").ok());
  // Finish refuses a bad endpoint before any call is made.
  auto o = Parse({"-r", "localhost:1234", "version"});
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().ToString().find("unix socket"), std::string::npos);
}

TEST(CriCli, RunpTakesAFileAndAHandler) {
  auto o = Parse({"runp", "--runtime", "cask", "pod.json"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->command, Command::kRunp);
  EXPECT_EQ(o->pod_config, "pod.json");
  EXPECT_EQ(o->runtime_handler, "cask");
  EXPECT_FALSE(Parse({"runp"}).ok());
}

TEST(CriCli, CreateNeedsPodAndBothConfigs) {
  auto o = Parse({"create", "abc", "c.json", "p.json"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->pod_id, "abc");
  EXPECT_EQ(o->container_config, "c.json");
  EXPECT_EQ(o->pod_config, "p.json");
  EXPECT_FALSE(Parse({"create", "abc", "c.json"}).ok());
}

TEST(CriCli, ExecKeepsTheCommandsOwnOptions) {
  auto o = Parse({"exec", "--timeout", "5", "ctr1", "sh", "-c", "echo --timeout; ls -l"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->exec_timeout_s, 5);
  ASSERT_EQ(o->ids.size(), 1u);
  EXPECT_EQ(o->ids[0], "ctr1");
  EXPECT_EQ(o->cmd, (std::vector<std::string>{"sh", "-c", "echo --timeout; ls -l"}));

  o = Parse({"exec", "ctr1", "--", "uname", "-r"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->cmd, (std::vector<std::string>{"uname", "-r"}));

  EXPECT_FALSE(Parse({"exec", "ctr1"}).ok());
  EXPECT_FALSE(Parse({"exec", "ctr1", "--"}).ok());
  EXPECT_FALSE(Parse({"exec"}).ok());
}

TEST(CriCli, StopTimeoutIsTheStopsNotTheGlobalOne) {
  auto o = Parse({"-t", "30", "stop", "--timeout", "7", "a", "b"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->timeout_s, 30);
  EXPECT_EQ(o->stop_timeout_s, 7);
  EXPECT_EQ(o->ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(Parse({"stop", "--timeout", "-1", "a"}).ok());
}

TEST(CriCli, UpdateParsesSizesAndNeedsSomething) {
  auto o = Parse({"update", "--memory", "64Mi", "--cpu-quota", "50000", "c1"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(*o->memory, 64 << 20);
  EXPECT_EQ(*o->cpu_quota, 50000);
  EXPECT_FALSE(o->cpu_period.has_value());
  auto none = Parse({"update", "c1"});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().ToString().find("nothing to change"), std::string::npos);
  auto bad = Parse({"update", "--memory", "12zb", "c1"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("--memory"), std::string::npos);
}

TEST(CriCli, LabelsAndStates) {
  auto o = Parse({"ps", "--label", "app=web", "--label", "tier=", "--state", "Exited"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->labels.at("app"), "web");
  EXPECT_EQ(o->labels.at("tier"), "");
  EXPECT_EQ(o->state, "exited");
  EXPECT_FALSE(Parse({"ps", "--label", "=x"}).ok());
  EXPECT_FALSE(Parse({"ps", "--state", "ready"}).ok());    // a pod state
  EXPECT_FALSE(Parse({"pods", "--state", "running"}).ok());  // a container state
  EXPECT_TRUE(Parse({"pods", "--state", "NotReady"}).ok());
}

TEST(CriCli, InspectTakesOneId) {
  EXPECT_TRUE(Parse({"inspect", "a"}).ok());
  EXPECT_FALSE(Parse({"inspectp", "a", "b"}).ok());
}

TEST(CriCli, LogsOptions) {
  auto o = Parse({"logs", "--tail", "3", "--timestamps", "c1"});
  ASSERT_TRUE(o.ok()) << o.error().ToString();
  EXPECT_EQ(o->tail, 3);
  EXPECT_TRUE(o->timestamps);
  EXPECT_FALSE(Parse({"logs", "a", "b"}).ok());
}

TEST(CriCli, ParseBytes) {
  EXPECT_EQ(*ParseBytes("1048576"), 1048576);
  EXPECT_EQ(*ParseBytes("512k"), 512 * 1024);
  EXPECT_EQ(*ParseBytes("64m"), 64 << 20);
  EXPECT_EQ(*ParseBytes("64Mi"), 64 << 20);
  EXPECT_EQ(*ParseBytes("64MB"), 64 << 20);
  EXPECT_EQ(*ParseBytes("2g"), int64_t{2} << 30);
  EXPECT_EQ(*ParseBytes("1Ti"), int64_t{1} << 40);
  EXPECT_FALSE(ParseBytes("").ok());
  EXPECT_FALSE(ParseBytes("-5").ok());
  EXPECT_FALSE(ParseBytes("m").ok());
  EXPECT_FALSE(ParseBytes("5x").ok());
  EXPECT_FALSE(ParseBytes("9999999999999999999999").ok());
  EXPECT_FALSE(ParseBytes("9000000t").ok());  // overflows int64
}

}  // namespace
}  // namespace cask::cri
