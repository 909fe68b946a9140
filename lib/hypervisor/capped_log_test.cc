#include "lib/hypervisor/capped_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <string>
#include <vector>

#include "lib/base/fs.h"

namespace cask::hypervisor {
namespace {

class CappedLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-capped-log-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)RemoveAll(dir_); }
  std::string dir_;
};

TEST_F(CappedLogTest, KeepsTheTailInMemoryAndOnDiskWithinTheCap) {
  constexpr size_t kKeep = 4096;
  auto log = CappedLog::Create(dir_ + "/console.log", kKeep);
  ASSERT_TRUE(log.ok()) << log.error().ToString();
  std::string line(99, 'x');
  line += '\n';
  uint64_t written = 0;
  // 10 MiB in small and big pieces.
  for (int i = 0; i < 100000; ++i) {
    std::string piece = std::to_string(i) + ":" + line;
    (*log)->Append(piece);
    written += piece.size();
    struct stat st;
    if (i % 997 == 0) {
      ASSERT_EQ(::stat((dir_ + "/console.log").c_str(), &st), 0);
      ASSERT_LE(static_cast<size_t>(st.st_size), 2 * kKeep);
    }
  }
  (*log)->Append(std::string(3 * kKeep, 'y') + "\nlast line\n");
  written += 3 * kKeep + 11;
  EXPECT_EQ((*log)->total_bytes(), written);
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/console.log").c_str(), &st), 0);
  EXPECT_LE(static_cast<size_t>(st.st_size), 2 * kKeep);
  EXPECT_EQ((*log)->file_bytes(), static_cast<uint64_t>(st.st_size));
  auto file = ReadFile(dir_ + "/console.log");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->substr(file->size() - 11), "\nlast line\n");
  std::string tail = (*log)->Tail(100);
  EXPECT_EQ(tail, "last line\n");  // from a line start
  EXPECT_LE((*log)->Tail(1 << 20).size(), kKeep);
  (*log)->RemoveFile();
  EXPECT_FALSE(PathExists(dir_ + "/console.log"));
  EXPECT_EQ((*log)->Tail(100), "last line\n");
  (*log)->Append("after\n");  // no file any more: memory only
  EXPECT_FALSE(PathExists(dir_ + "/console.log"));
}

TEST_F(CappedLogTest, RefusesASymlinkedPath) {
  ASSERT_EQ(::symlink("/etc/passwd", (dir_ + "/console.log").c_str()), 0);
  EXPECT_FALSE(CappedLog::Create(dir_ + "/console.log", 1024).ok());
}

TEST(LineLimiterTest, CutsLongLinesAndLimitsTheRate) {
  std::vector<std::string> out;
  LineLimiter lim([&](std::string_view l) { out.emplace_back(l); }, /*bytes_per_sec=*/1000, /*burst=*/2000,
                  /*max_line=*/50);
  auto t0 = LineLimiter::Clock::now();
  lim.Feed("hello\r\nwor", t0);
  lim.Feed("ld\n", t0);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], "hello");
  EXPECT_EQ(out[1], "world");
  out.clear();
  lim.Feed(std::string(10000, 'a') + "\n", t0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], std::string(50, 'a') + "...");
  out.clear();
  // 1 MB of lines in the same instant: only the burst gets through.
  std::string many;
  for (int i = 0; i < 20000; ++i) many += std::string(49, 'b') + "\n";
  lim.Feed(many, t0);
  size_t logged = 0;
  for (auto& l : out) logged += l.size() + 1;
  EXPECT_LE(logged, 2000u);
  EXPECT_GT(lim.dropped_bytes(), 900000u);
  out.clear();
  // A second later: the drop is reported, then lines flow again.
  lim.Feed("again\n", t0 + std::chrono::seconds(1));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_NE(out[0].find("not logged: rate limit"), std::string::npos);
  EXPECT_EQ(out[1], "again");
  lim.Feed("partial", t0 + std::chrono::seconds(2));
  lim.Flush(t0 + std::chrono::seconds(2));
  EXPECT_EQ(out.back(), "partial");
}

// The VM log pump copies the console (into its log and as log lines) and
// each stderr stream, marks a stream's EOF, and returns on the wake.
TEST_F(CappedLogTest, VmLogPumpCopiesEveryStreamAndEndsOnTheWake) {
  auto console = CappedLog::Create(dir_ + "/console.log", 4096);
  auto err = CappedLog::Create(dir_ + "/err.log", 4096);
  ASSERT_TRUE(console.ok() && err.ok());
  int cp[2], ep[2], lp[2];
  ASSERT_EQ(::pipe2(cp, O_CLOEXEC | O_NONBLOCK), 0);
  ASSERT_EQ(::pipe2(ep, O_CLOEXEC | O_NONBLOCK), 0);
  ASSERT_EQ(::pipe2(lp, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd c_r(cp[0]), c_w(cp[1]), e_r(ep[0]), e_w(ep[1]), l_r(lp[0]), l_w(lp[1]);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(wake.valid());
  Logger logger(l_w.get(), LogLevel::kInfo, "test");
  std::atomic<bool> err_eof{false};
  std::thread pump([&] {
    PumpVmLogs(wake.get(), c_r.get(), console->get(), logger, {{e_r.get(), err->get(), &err_eof}});
  });
  ASSERT_EQ(::write(c_w.get(), "booted\n", 7), 7);
  ASSERT_EQ(::write(e_w.get(), "warning: x\n", 11), 11);
  e_w.Reset();  // EOF on the stderr stream
  for (int i = 0; i < 500 && !err_eof; ++i) ::usleep(10000);
  EXPECT_TRUE(err_eof.load());
  uint64_t one = 1;
  ASSERT_EQ(::write(wake.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  pump.join();
  EXPECT_EQ((*console)->Tail(100), "booted\n");
  EXPECT_EQ((*err)->Tail(100), "warning: x\n");
  std::string logged(4096, '\0');
  ssize_t n = ::read(l_r.get(), logged.data(), logged.size());
  ASSERT_GT(n, 0);
  logged.resize(static_cast<size_t>(n));
  EXPECT_NE(logged.find("guest console"), std::string::npos) << logged;
  EXPECT_NE(logged.find("booted"), std::string::npos) << logged;
}

}  // namespace
}  // namespace cask::hypervisor
