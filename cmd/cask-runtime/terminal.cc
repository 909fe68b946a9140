#include "cmd/cask-runtime/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

namespace cask::runtime {

std::optional<WindowSize> GetWindowSize(int fd) {
  struct winsize ws {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0) return std::nullopt;
  return WindowSize{ws.ws_row, ws.ws_col};
}

Result<RawTerminal> RawTerminal::Enter(int fd) {
  RawTerminal t;
  if (::tcgetattr(fd, &t.saved_) != 0) return Error::Sys(errno, "tcgetattr");
  struct termios raw = t.saved_;
  ::cfmakeraw(&raw);
  // cfmakeraw also clears OPOST: the guest's pty already turns "\n" into
  // "\r\n", so output passes through unchanged.
  if (::tcsetattr(fd, TCSADRAIN, &raw) != 0) return Error::Sys(errno, "tcsetattr raw");
  t.fd_ = fd;
  return t;
}

void RawTerminal::Restore() {
  if (fd_ < 0) return;
  ::tcsetattr(fd_, TCSADRAIN, &saved_);
  fd_ = -1;
}

}  // namespace cask::runtime
