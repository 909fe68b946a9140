// The local terminal of `cask-runtime run -t`: raw mode and window size.
#pragma once

#include <termios.h>

#include <cstdint>
#include <optional>

#include "lib/base/result.h"

namespace cask::runtime {

struct WindowSize {
  uint32_t rows = 0;
  uint32_t cols = 0;
};

// The window size of the terminal on `fd`, or nullopt if it is not a
// terminal (or reports 0x0).
std::optional<WindowSize> GetWindowSize(int fd);

// Puts the terminal on `fd` in raw mode (cfmakeraw: no echo, no line
// editing, no signal keys -- ^C reaches the container's terminal instead)
// and restores the saved settings when destroyed. Move-only owner of the
// terminal's mode.
class RawTerminal {
 public:
  RawTerminal() = default;
  static Result<RawTerminal> Enter(int fd);
  ~RawTerminal() { Restore(); }
  RawTerminal(RawTerminal&& o) noexcept : fd_(o.fd_), saved_(o.saved_) { o.fd_ = -1; }
  RawTerminal& operator=(RawTerminal&& o) noexcept {
    if (this != &o) {
      Restore();
      fd_ = o.fd_;
      saved_ = o.saved_;
      o.fd_ = -1;
    }
    return *this;
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  void Restore();

 private:
  int fd_ = -1;
  struct termios saved_ {};
};

}  // namespace cask::runtime
