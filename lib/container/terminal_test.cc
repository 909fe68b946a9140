#include "lib/container/terminal.h"

#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "lib/container/container.h"

namespace cask::container {
namespace {

TEST(TerminalTest, OpenAndResize) {
  oci::ConsoleSize size{24, 80};
  auto pty = OpenPty(size);
  ASSERT_TRUE(pty.ok()) << pty.error().ToString();
  EXPECT_EQ(pty->slave_path.rfind("/dev/pts/", 0), 0u);
  winsize ws{};
  ASSERT_EQ(ioctl(pty->slave.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_row, 24);
  EXPECT_EQ(ws.ws_col, 80);

  ASSERT_TRUE(ResizePty(pty->master.get(), 50, 132).ok());
  ASSERT_EQ(ioctl(pty->slave.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_row, 50);
  EXPECT_EQ(ws.ws_col, 132);

  // Data written to the slave comes out of the master.
  ASSERT_EQ(write(pty->slave.get(), "hi\n", 3), 3);
  char buf[16] = {};
  ssize_t n = read(pty->master.get(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "hi\r\n");
}

TEST(TerminalTest, ResizeErrors) {
  EXPECT_FALSE(ResizePty(-1, 10, 10).ok());
  auto pty = OpenPty(std::nullopt);
  ASSERT_TRUE(pty.ok());
  auto big = ResizePty(pty->master.get(), 70000, 10);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace cask::container
