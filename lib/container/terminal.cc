#include "lib/container/terminal.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include "lib/container/container.h"

namespace cask::container {

Status ResizePty(int pty_master, uint32_t rows, uint32_t cols) {
  if (rows > USHRT_MAX || cols > USHRT_MAX) {
    return Error::InvalidArgument("terminal size " + std::to_string(cols) + "x" +
                                  std::to_string(rows) + " is out of range");
  }
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  if (ioctl(pty_master, TIOCSWINSZ, &ws) != 0) return Error::Sys(errno, "resize terminal");
  return Ok();
}

Result<Pty> OpenPty(const std::optional<oci::ConsoleSize>& size) {
  Pty pty;
  pty.master.Reset(open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.master) return Error::Sys(errno, "open /dev/ptmx");
  if (unlockpt(pty.master.get()) != 0) return Error::Sys(errno, "unlockpt");
  char name[128];
  if (int rc = ptsname_r(pty.master.get(), name, sizeof name); rc != 0) {
    return Error::Sys(rc, "ptsname");
  }
  pty.slave_path = name;
  pty.slave.Reset(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.slave) return Error::Sys(errno, "open " + pty.slave_path);
  if (size && (size->height != 0 || size->width != 0)) {
    CASK_TRY(ResizePty(pty.master.get(), size->height, size->width));
  }
  return pty;
}

Status SetControllingTerminal(int slave) {
  if (setsid() < 0) return Error::Sys(errno, "setsid");
  if (ioctl(slave, TIOCSCTTY, 0) != 0) return Error::Sys(errno, "set controlling terminal");
  for (int fd = 0; fd < 3; ++fd) {
    if (dup2(slave, fd) < 0) return Error::Sys(errno, "dup2 terminal to fd " + std::to_string(fd));
  }
  return Ok();
}

}  // namespace cask::container
