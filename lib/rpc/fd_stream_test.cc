// FdStream on a character device (a pty stands in for the guest's
// virtio-serial port): only the reading thread polls the fd; a writer that
// finds it full waits for the reader's word, or retries by itself.
#include "lib/rpc/fd_stream.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace cask::rpc::internal {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A raw pty: the master is the stream's fd, the test plays the peer on the
// slave side.
struct Pty {
  UniqueFd master;
  UniqueFd slave;
};

Pty OpenPty() {
  Pty p;
  p.master.Reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  EXPECT_TRUE(p.master.valid());
  EXPECT_EQ(::grantpt(p.master.get()), 0);
  EXPECT_EQ(::unlockpt(p.master.get()), 0);
  p.slave.Reset(::open(::ptsname(p.master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
  EXPECT_TRUE(p.slave.valid());
  struct termios t;
  EXPECT_EQ(::tcgetattr(p.slave.get(), &t), 0);
  ::cfmakeraw(&t);
  EXPECT_EQ(::tcsetattr(p.slave.get(), TCSANOW, &t), 0);
  return p;
}

// Reads exactly `n` bytes from `fd` (blocking), or fewer at EOF/error.
std::string ReadN(int fd, size_t n) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 23);
  return s;
}

TEST(FdStreamCharDeviceTest, WriterLargerThanTheDeviceFinishesWhileTheReaderWaits) {
  Pty pty = OpenPty();
  auto stream = FdStream::Make(std::move(pty.master));
  ASSERT_TRUE(stream.ok()) << stream.error().ToString();
  FdStream& s = **stream;

  // The reader waits for input that only comes at the end; meanwhile it is
  // the one that watches for room on the writer's behalf.
  std::atomic<bool> reader_done{false};
  std::string got_in;
  std::thread reader([&] {
    char buf[64];
    auto n = s.Read(buf, sizeof buf, std::chrono::steady_clock::now() + seconds(60));
    if (n.ok()) got_in.assign(buf, *n);
    reader_done = true;
  });

  const std::string frame = Pattern(1 << 20);  // far more than a pty holds
  std::string got_out;
  std::thread peer([&] { got_out = ReadN(pty.slave.get(), frame.size()); });
  Status st = s.WriteAll(frame);
  peer.join();
  EXPECT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_EQ(got_out.size(), frame.size());
  EXPECT_TRUE(got_out == frame) << "bytes arrived changed or out of order";
  EXPECT_FALSE(reader_done.load());

  // The reader still gets the input that arrives afterwards.
  ASSERT_EQ(::write(pty.slave.get(), "ping", 4), 4);
  reader.join();
  EXPECT_EQ(got_in, "ping");
}

TEST(FdStreamCharDeviceTest, WriterWithoutAReaderStillFinishes) {
  Pty pty = OpenPty();
  auto stream = FdStream::Make(std::move(pty.master));
  ASSERT_TRUE(stream.ok());
  const std::string frame = Pattern(256 << 10);
  std::string got;
  std::thread peer([&] { got = ReadN(pty.slave.get(), frame.size()); });
  Status st = (*stream)->WriteAll(frame);
  peer.join();
  EXPECT_TRUE(st.ok()) << st.error().ToString();
  EXPECT_TRUE(got == frame);
}

TEST(FdStreamCharDeviceTest, WakeReleasesAWriterWaitingForRoom) {
  Pty pty = OpenPty();
  auto stream = FdStream::Make(std::move(pty.master));
  ASSERT_TRUE(stream.ok());
  FdStream& s = **stream;
  std::thread reader([&] {
    char buf[64];
    (void)s.Read(buf, sizeof buf, std::nullopt);
  });
  std::atomic<bool> returned{false};
  Status st;
  std::thread writer([&] {
    st = s.WriteAll(Pattern(1 << 20));  // nobody drains the slave: it waits
    returned = true;
  });
  // Wait until the writer is stuck (the pty is full), then wake the stream.
  for (int i = 0; i < 200 && !returned.load(); ++i) {
    struct pollfd p = {pty.slave.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(returned.load());
  s.Wake();
  writer.join();
  reader.join();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kCancelled) << st.error().ToString();
}

TEST(FdStreamCharDeviceTest, ReaderReturnsInputAndDeadlines) {
  Pty pty = OpenPty();
  auto stream = FdStream::Make(std::move(pty.master));
  ASSERT_TRUE(stream.ok());
  FdStream& s = **stream;
  char buf[16];
  auto n = s.Read(buf, sizeof buf, std::chrono::steady_clock::now() + milliseconds(50));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().code(), Code::kDeadlineExceeded);
  ASSERT_EQ(::write(pty.slave.get(), "hello", 5), 5);
  n = s.Read(buf, sizeof buf, std::chrono::steady_clock::now() + seconds(30));
  ASSERT_TRUE(n.ok()) << n.error().ToString();
  EXPECT_EQ(std::string(buf, *n), "hello");
}

}  // namespace
}  // namespace cask::rpc::internal
