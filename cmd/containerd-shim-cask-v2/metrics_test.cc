#include "cmd/containerd-shim-cask-v2/metrics.h"

#include <gtest/gtest.h>

#include "github.com/containerd/cgroups/v2/stats/metrics.pb.h"

namespace cask::shim {
namespace {

TEST(Metrics, FromGuestCgroup) {
  sys::CgroupStats s;
  s.cpu_stat = {{"usage_usec", 1500}, {"user_usec", 1000}, {"system_usec", 500}, {"nr_throttled", 2},
                {"throttled_usec", 9}};
  s.memory_current = 4096;
  s.memory_max = 0;  // "max"
  s.memory_stat = {{"anon", 100}, {"file", 200}, {"pgfault", 7}, {"pgmajfault", 1}, {"inactive_file", 50},
                   {"thp_collapse_alloc", 11}, {"workingset_refault_anon", 3}, {"workingset_refault_file", 4}};
  s.memory_swap_current = 8192;
  s.memory_events = {{"low", 5}, {"oom", 1}, {"oom_kill", 2}};
  s.pids_current = 3;
  s.pids_max = 100;
  s.io.push_back({254, 0, 10, 20, 1, 2});
  ::io::containerd::cgroups::v2::Metrics m;
  ASSERT_TRUE(m.ParseFromString(EncodeMetricsV2(s)));
  EXPECT_EQ(m.cpu().usage_usec(), 1500u);
  EXPECT_EQ(m.cpu().user_usec(), 1000u);
  EXPECT_EQ(m.cpu().nr_throttled(), 2u);
  EXPECT_EQ(m.cpu().throttled_usec(), 9u);
  EXPECT_EQ(m.cpu().nr_periods(), 0u);  // not reported: 0
  EXPECT_EQ(m.memory().usage(), 4096u);
  EXPECT_EQ(m.memory().usage_limit(), UINT64_MAX);
  EXPECT_EQ(m.memory().anon(), 100u);
  EXPECT_EQ(m.memory().inactive_file(), 50u);
  EXPECT_EQ(m.memory().pgfault(), 7u);
  EXPECT_EQ(m.memory().thp_collapse_alloc(), 11u);
  EXPECT_EQ(m.memory().workingset_refault(), 7u);  // anon + file
  EXPECT_EQ(m.memory().swap_usage(), 8192u);
  EXPECT_EQ(m.memory_events().low(), 5u);
  EXPECT_EQ(m.memory_events().high(), 0u);
  EXPECT_EQ(m.memory_events().oom(), 1u);
  EXPECT_EQ(m.memory_events().oom_kill(), 2u);
  EXPECT_EQ(m.pids().current(), 3u);
  EXPECT_EQ(m.pids().limit(), 100u);
  ASSERT_EQ(m.io().usage_size(), 1);
  EXPECT_EQ(m.io().usage(0).wbytes(), 20u);
  EXPECT_STREQ(kMetricsV2TypeUrl, ::io::containerd::cgroups::v2::Metrics::descriptor()->full_name().c_str());
}

}  // namespace
}  // namespace cask::shim
