// Pseudo-terminals for container processes.
//
// The pty pair is opened in the agent's /dev (the guest's devpts): the
// master stays with the agent (ProcessIo::pty_master), the slave is passed
// to the child, which makes it its controlling terminal.
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

// Opens /dev/ptmx (O_CLOEXEC, O_NOCTTY), unlocks it and opens the slave.
// `size`, if given, is applied to the new terminal.
Result<Pty> OpenPty(const std::optional<oci::ConsoleSize>& size);

// Child side: starts a new session, makes `slave` the controlling terminal
// and dups it onto 0, 1 and 2.
Status SetControllingTerminal(int slave);

}  // namespace cask::container
