// The agent's view of the kernel command line (/proc/cmdline).
//
// The host passes `cask.channel=serial|vsock` and `cask.debug=1`
// (docs/architecture.md, "Names shared by host and guest"). Anything else on
// the command line belongs to the kernel and is ignored; an unknown `cask.*`
// key or a bad value does not stop the agent (PID 1 must come up whatever the
// host sent): it is reported in `warnings` and the default is kept.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cask::agent {

enum class ChannelKind { kSerial, kVsock };

struct BootOptions {
  ChannelKind channel = ChannelKind::kSerial;
  bool debug = false;
  // One line per ignored cask.* parameter, e.g.
  // "cask.channel: unknown value \"tcp\" (want serial or vsock)".
  std::vector<std::string> warnings;
};

// Splits a kernel command line into parameters, honouring double quotes the
// way the kernel does (`a="b c"` is one parameter `a=b c`).
std::vector<std::string> SplitCmdline(std::string_view cmdline);

BootOptions ParseBootOptions(std::string_view cmdline);

std::string_view ChannelName(ChannelKind kind);

}  // namespace cask::agent
