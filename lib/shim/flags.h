// Command line of containerd-shim-<name>-v2, as containerd (1.6) invokes it
// for `start`, for `delete` and, through `start`, for the daemon:
//
//   <shim> -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
//   <shim> -namespace NS -address ADDR -publish-binary BIN -id ID -bundle DIR delete
//   <shim> -namespace NS -id ID -address ADDR [-debug]          (the daemon)
//
// Parsing follows Go's `flag` package: one or two dashes, `-x value`,
// `-x=value`, bool flags as `-x` or `-x=true|false`; parsing stops at the
// first non-flag argument or after `--`; the remaining argument is the action.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"

namespace cask::shim {

enum class Action { kDaemon, kStart, kDelete };

struct Flags {
  std::string ns;                            // -namespace
  std::string address;                       // -address: containerd's gRPC socket path
  std::string publish_binary = "containerd"; // -publish-binary (unused since containerd 1.3)
  std::string id;                            // -id: the task id
  std::string bundle;                        // -bundle: only for `delete`
  std::string socket;                        // -socket: an address to listen on instead of fd 3
  bool debug = false;                        // -debug
  bool version = false;                      // -v: print the version and exit
  Action action = Action::kDaemon;
};

// Parses argv without argv[0]. Errors are INVALID_ARGUMENT and name the flag
// or argument ("flag provided but not defined: -foo").
Result<Flags> ParseFlags(const std::vector<std::string>& args);

// The argv (without argv[0]) that `start` uses to re-execute the daemon (the
// listening socket itself goes along as fd 3).
std::vector<std::string> DaemonArgs(const Flags& flags);

std::string_view ActionName(Action a);

}  // namespace cask::shim
