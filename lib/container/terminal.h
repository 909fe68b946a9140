// Pseudo-terminals for container processes.
//
// The pty pair is opened by the container process itself, in the
// container's /dev/ptmx (its own devpts instance, as runc), so tty(1) names
// a /dev/pts device visible in the container; the master is passed to the
// agent (ProcessIo::pty_master), the slave becomes the controlling terminal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/oci/spec.h"

namespace cask::container {

struct Pty {
  UniqueFd master;
  UniqueFd slave;
  std::string slave_path;  // e.g. /dev/pts/3 (guest path)
};

// Opens /dev/ptmx of the calling process's root (O_CLOEXEC, O_NOCTTY),
// unlocks it and opens the slave.
// `size`, if given, is applied to the new terminal.
Result<Pty> OpenPty(const std::optional<oci::ConsoleSize>& size);

// Child side: starts a new session, makes `slave` the controlling terminal
// and dups it onto 0, 1 and 2.
Status SetControllingTerminal(int slave);

}  // namespace cask::container
