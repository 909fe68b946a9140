#include "cmd/cask-cri/cri_log.h"

#include <gtest/gtest.h>

namespace cask::cri {
namespace {

TEST(CriLog, ParsesFullAndPartialRecords) {
  auto lines = ParseCriLog(
      "2026-11-29T20:00:00.000000001Z stdout F hello\n"
      "2026-11-29T20:00:00.000000002Z stderr P par\n"
      "2026-11-29T20:00:00.000000003Z stdout F  two spaces kept\n"
      "2026-11-29T20:00:00.000000004Z stderr F tial\n"
      "2026-11-29T20:00:00.000000005Z stdout F\n"
      "2026-11-29T20:00:00.000000006Z stdout F \n");
  ASSERT_TRUE(lines.ok()) << lines.error().ToString();
  ASSERT_EQ(lines->size(), 5u);
  EXPECT_EQ((*lines)[0].text, "hello");
  EXPECT_EQ((*lines)[0].stream, "stdout");
  EXPECT_EQ((*lines)[1].text, " two spaces kept");
  EXPECT_EQ((*lines)[2].text, "partial");
  EXPECT_EQ((*lines)[2].stream, "stderr");
  EXPECT_EQ((*lines)[2].time, "2026-11-29T20:00:00.000000004Z");
  EXPECT_EQ((*lines)[3].text, "");
  EXPECT_EQ((*lines)[4].text, "");
}

TEST(CriLog, TrailingPartialAndNoFinalNewline) {
  auto lines = ParseCriLog("t1 stdout F a\nt2 stdout P b");
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_EQ((*lines)[1].text, "b");
}

TEST(CriLog, BadRecordsNameTheirLine) {
  for (const char* bad : {"t1 stdout F a\nnospace\n", "t1 stdout F a\nt2 stdin F x\n", "t1 stdout F a\nt2 stdout X y\n",
                          "t1 stdout F a\nt2 stdout Fy\n", "t1 stdout F a\n t2\n"}) {
    auto r = ParseCriLog(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().ToString().find("line 2"), std::string::npos) << r.error().ToString();
  }
}

TEST(CriLog, Tail) {
  std::vector<LogLine> l = {{"t", "stdout", "1"}, {"t", "stdout", "2"}, {"t", "stdout", "3"}};
  EXPECT_EQ(Tail(l, -1).size(), 3u);
  EXPECT_EQ(Tail(l, 5).size(), 3u);
  ASSERT_EQ(Tail(l, 2).size(), 2u);
  EXPECT_EQ(Tail(l, 2)[0].text, "2");
  EXPECT_TRUE(Tail(l, 0).empty());
}

}  // namespace
}  // namespace cask::cri
