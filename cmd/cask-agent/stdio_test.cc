#include "cmd/cask-agent/stdio.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "lib/base/fs.h"

namespace cask::agent {
namespace {

WaitLimits Within(std::chrono::milliseconds d) {
  WaitLimits l;
  l.deadline = std::chrono::steady_clock::now() + d;
  return l;
}

TEST(StreamBuffer, ReadBlocksUntilDataThenEofAfterDrain) {
  StreamBuffer b(16);
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    b.Append("hello");
    b.SetEof();
  });
  auto c = b.Read(3, Within(std::chrono::seconds(5)));
  ASSERT_TRUE(c.ok());
  producer.join();
  EXPECT_EQ(c->data, "hel");
  EXPECT_FALSE(c->eof);  // data left
  c = b.Read(100, {});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->data, "lo");
  EXPECT_TRUE(c->eof);
  c = b.Read(100, {});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->data, "");
  EXPECT_TRUE(c->eof);
}

TEST(StreamBuffer, DeadlineAndCancel) {
  StreamBuffer b(16);
  auto c = b.Read(10, Within(std::chrono::milliseconds(30)));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kDeadlineExceeded);

  std::atomic<bool> cancel{false};
  WaitLimits l;
  l.cancelled = [&] { return cancel.load(); };
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    cancel = true;
    b.Interrupt();
  });
  c = b.Read(10, l);
  t.join();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kUnavailable);
}

TEST(StreamBuffer, ProducerWaitsForSpace) {
  StreamBuffer b(4);
  EXPECT_EQ(b.WaitForSpace(), 4u);
  b.Append("abcdef");  // only 4 fit
  EXPECT_EQ(b.size(), 4u);
  std::atomic<bool> got_space{false};
  std::thread producer([&] {
    size_t n = b.WaitForSpace();
    got_space = n > 0;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(got_space.load());  // still full
  auto c = b.Read(2, {});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->data, "ab");
  producer.join();
  EXPECT_TRUE(got_space.load());
}

TEST(StreamBuffer, AbortGivesEof) {
  StreamBuffer b(4);
  b.Append("ab");
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    b.Abort();
  });
  auto c = b.Read(1, {});  // data is there: returns at once
  ASSERT_TRUE(c.ok());
  t.join();
  c = b.Read(1, {});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->eof);
  EXPECT_EQ(b.WaitForSpace(), 0u);
}

// Blocks handed to the buffer come out whole (no copy: the same memory),
// cut only where `max` falls, and in order.
TEST(StreamBuffer, BlocksMoveThroughAndAreCutAtMax) {
  StreamBuffer b(1 << 20);
  ByteBlock big(64 * 1024);
  big.Append(std::string(64 * 1024, 'a'));
  const char* where = big.data();
  b.Append(std::move(big));
  ByteBlock second(32 * 1024);
  second.Append(std::string(32 * 1024, 'b'));
  b.Append(std::move(second));
  EXPECT_EQ(b.size(), 96u * 1024);
  BlockChunk c = b.TryReadBlocks(80 * 1024);
  ASSERT_EQ(c.blocks.size(), 2u);
  EXPECT_EQ(c.blocks[0].data(), where);  // moved, not copied
  EXPECT_EQ(c.blocks[0].view(), std::string(64 * 1024, 'a'));
  EXPECT_EQ(c.blocks[1].view(), std::string(16 * 1024, 'b'));  // cut at max
  EXPECT_FALSE(c.eof);
  b.SetEof();
  c = b.TryReadBlocks(1 << 20);
  ASSERT_EQ(c.blocks.size(), 1u);
  EXPECT_EQ(c.blocks[0].view(), std::string(16 * 1024, 'b'));
  EXPECT_TRUE(c.eof);
}

// The bound counts allocations, not bytes: blocks mostly empty and tiny
// appends are copied together, so a producer of one-byte writes fills the
// buffer to its capacity in bytes and never holds more memory than that.
TEST(StreamBuffer, TinyAppendsAreCoalescedWithinTheBound) {
  StreamBuffer b(64 * 1024);
  size_t appended = 0;
  while (b.TakeRoom() > 0) {
    ByteBlock one(StreamPump::kReadBlock);  // what a short read leaves
    one.Append("x");
    b.Append(std::move(one));
    ++appended;
  }
  EXPECT_EQ(appended, 64u * 1024);
  EXPECT_EQ(b.size(), 64u * 1024);
  BlockChunk c = b.TryReadBlocks(1 << 20);
  size_t total = 0;
  for (const auto& blk : c.blocks) {
    total += blk.size();
    EXPECT_GE(blk.size(), StreamBuffer::kSmallBlock);  // coalesced, not 65536 blocks
  }
  EXPECT_EQ(total, 64u * 1024);
  // A block larger than the room left is refused whole and copied in part.
  ByteBlock big(128 * 1024);
  big.Append(std::string(128 * 1024, 'y'));
  b.Append(std::move(big));
  EXPECT_EQ(b.size(), 64u * 1024);
}

// Back-pressure end to end: with a 1 KiB buffer, a writer of 256 KiB blocks
// on the pipe until the reader drains; every byte arrives in order.
TEST(StreamPump, BackPressureNeverDrops) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd w(p[1]);
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  auto pump = StreamPump::Start(**loop, UniqueFd(p[0]), 1024);
  ASSERT_TRUE(pump.ok());
  std::string sent;
  for (int i = 0; i < 256 * 1024; ++i) sent += static_cast<char>('a' + i % 26);
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    ASSERT_TRUE(WriteAll(w.get(), sent).ok());
    w.Reset();
    writer_done = true;
  });
  // The pump fills the buffer when the machine lets it: wait for that
  // itself (a hang guard only).
  for (int i = 0; i < 3000 && (*pump)->buffer().size() < 1024u; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ((*pump)->buffer().size(), 1024u);
  EXPECT_FALSE(writer_done.load());  // the pipe (64 KiB) + buffer (1 KiB) are full
  std::string got;
  for (;;) {
    auto c = (*pump)->buffer().Read(700, Within(std::chrono::seconds(10)));
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    got += c->data;
    if (c->eof) break;
  }
  writer.join();
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
}

TEST(StreamPump, ResizesItsPipe) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd w(p[1]);
  const int before = fcntl(p[0], F_GETPIPE_SZ);
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  auto pump = StreamPump::Start(**loop, UniqueFd(p[0]), 1024, {}, 1 << 20);
  ASSERT_TRUE(pump.ok());
  // Root raises it to 1 MiB; an unprivileged test run may stay at the
  // user's limit, but never goes below what it was.
  EXPECT_GE(fcntl(w.get(), F_GETPIPE_SZ), before);
  if (geteuid() == 0) {
    EXPECT_EQ(fcntl(w.get(), F_GETPIPE_SZ), 1 << 20);
  }
}

TEST(StreamPump, PtyEioIsEof) {
  int master, slave;
  ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  fcntl(master, F_SETFD, FD_CLOEXEC);
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  auto pump = StreamPump::Start(**loop, UniqueFd(master), 4096);
  ASSERT_TRUE(pump.ok());
  ASSERT_TRUE(WriteAll(slave, "out\n").ok());
  close(slave);
  std::string got;
  for (;;) {
    auto c = (*pump)->buffer().Read(100, Within(std::chrono::seconds(5)));
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    got += c->data;
    if (c->eof) break;
  }
  EXPECT_EQ(got, "out\r\n");  // the line discipline maps NL to CRNL
}

TEST(StreamPump, DestroyStopsABlockedPump) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd w(p[1]);
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  auto pump = StreamPump::Start(**loop, UniqueFd(p[0]), 1024);
  ASSERT_TRUE(pump.ok());
  pump->reset();  // the writer is still open: the loop must not hang
  EXPECT_EQ((*loop)->size(), 0u);
}

// A small writer with a short-read delay: after each short read the pipe is
// watched again only through the loop's timer, so every byte arriving (in
// order, then EOF) shows the delayed re-arms fire.
TEST(StreamPump, ShortReadDelayStillDeliversEverythingInOrder) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd w(p[1]);
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  auto pump = StreamPump::Start(**loop, UniqueFd(p[0]), 1 << 20, {}, 0, std::chrono::microseconds(2000));
  ASSERT_TRUE(pump.ok());
  std::string sent;
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      std::string line = std::to_string(i) + "\n";
      ASSERT_TRUE(WriteAll(w.get(), line).ok());
      sent += line;
      if (i % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    w.Reset();
  });
  std::string got;
  for (;;) {
    auto c = (*pump)->buffer().Read(1 << 20, Within(std::chrono::seconds(10)));
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    got += c->data;
    if (c->eof) break;
  }
  writer.join();
  EXPECT_EQ(got, sent);
}

// The same on a pty master (reads of at most 4 KiB): more than a
// terminal read's worth, written in one go and in small pieces, arrives.
TEST(StreamPump, ShortReadDelayOnAPty) {
  int master, slave;
  ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  fcntl(master, F_SETFD, FD_CLOEXEC);
  struct termios t;
  ASSERT_EQ(tcgetattr(slave, &t), 0);
  cfmakeraw(&t);  // no NL -> CRNL, so the bytes compare as written
  ASSERT_EQ(tcsetattr(slave, TCSANOW, &t), 0);
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  auto pump = StreamPump::Start(**loop, UniqueFd(master), 1 << 20, {}, 0, std::chrono::microseconds(2000));
  ASSERT_TRUE(pump.ok());
  std::string sent(20000, 'z');
  for (int i = 0; i < 50; ++i) sent += "line " + std::to_string(i) + "\n";
  std::thread writer([&] {
    ASSERT_TRUE(WriteAll(slave, sent.substr(0, 20000)).ok());
    for (size_t off = 20000; off < sent.size(); off += 7) {
      ASSERT_TRUE(WriteAll(slave, sent.substr(off, 7)).ok());
      if (off % 70 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::string got;
  while (got.size() < sent.size()) {
    auto c = (*pump)->buffer().Read(1 << 20, Within(std::chrono::seconds(10)));
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    ASSERT_FALSE(c->eof);
    got += c->data;
  }
  writer.join();
  close(slave);
  EXPECT_EQ(got, sent);
}

// A pump destroyed while its delayed re-arm is pending: the re-arm is
// dropped (the fd number, reused by the next pump, is not re-armed with the
// old token), and the next pump on the same loop works.
TEST(StreamPump, DestroyWithADelayedRearmPending) {
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  for (int round = 0; round < 3; ++round) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd w(p[1]);
    auto pump = StreamPump::Start(**loop, UniqueFd(p[0]), 4096, {}, 0, IoLoop::kMaxRearmDelay);
    ASSERT_TRUE(pump.ok());
    ASSERT_TRUE(WriteAll(w.get(), "x").ok());
    auto c = (*pump)->buffer().Read(10, Within(std::chrono::seconds(10)));
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    EXPECT_EQ(c->data, "x");
    pump->reset();  // its re-arm is still 100 ms away
    EXPECT_EQ((*loop)->size(), 0u);
  }
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd w(p[1]);
  auto pump = StreamPump::Start(**loop, UniqueFd(p[0]), 4096);
  ASSERT_TRUE(pump.ok());
  ASSERT_TRUE(WriteAll(w.get(), "ok").ok());
  w.Reset();
  std::string got;
  for (;;) {
    auto c = (*pump)->buffer().Read(10, Within(std::chrono::seconds(10)));
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    got += c->data;
    if (c->eof) break;
  }
  EXPECT_EQ(got, "ok");
}

// Many streams, one thread: 200 pipes pumped by one IoLoop, each with its
// own back-pressure, the listener told of every arrival.
TEST(StreamPump, OneLoopServesManyStreams) {
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  constexpr int kStreams = 200;
  std::atomic<int> notified{0};
  std::vector<UniqueFd> writers;
  std::vector<std::unique_ptr<StreamPump>> pumps;
  for (int i = 0; i < kStreams; ++i) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    writers.emplace_back(p[1]);
    auto pump = StreamPump::Start(**loop, UniqueFd(p[0]), 64, [&] { ++notified; });
    ASSERT_TRUE(pump.ok());
    pumps.push_back(std::move(*pump));
  }
  EXPECT_EQ((*loop)->size(), static_cast<size_t>(kStreams));
  // 100 bytes each: more than the 64-byte buffer, so each pauses once.
  for (int i = 0; i < kStreams; ++i)
    ASSERT_TRUE(WriteAll(writers[i].get(), std::string(100, static_cast<char>('A' + i % 26))).ok());
  for (auto& w : writers) w.Reset();
  for (int i = 0; i < kStreams; ++i) {
    std::string got;
    for (;;) {
      auto c = pumps[i]->buffer().Read(1000, Within(std::chrono::seconds(10)));
      ASSERT_TRUE(c.ok()) << c.error().ToString();
      got += c->data;
      if (c->eof) break;
    }
    EXPECT_EQ(got, std::string(100, static_cast<char>('A' + i % 26)));
  }
  EXPECT_GE(notified.load(), 2 * kStreams);  // data and EOF, at least
  pumps.clear();
  EXPECT_EQ((*loop)->size(), 0u);
}

}  // namespace
}  // namespace cask::agent
