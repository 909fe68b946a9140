// `cask-runtime check`: can this host run cask? A table of named items.
#pragma once

#include <string>
#include <vector>

#include "lib/config/config.h"
#include "lib/hypervisor/hypervisor.h"

namespace cask::runtime {

struct CheckItem {
  enum class Result { kOk, kFail, kInfo };
  std::string name;
  bool required = true;  // a failed required item fails the command
  Result result = Result::kOk;
  std::string detail;
};

// Every item for `cfg` on a host described by `probe`. Reads files, runs
// nothing but `<qemu> --version`.
std::vector<CheckItem> RunHostChecks(const config::Config& cfg, const hypervisor::HostProbe& probe);

// "CHECK  RESULT  DETAIL" table, one line per item.
std::string RenderChecks(const std::vector<CheckItem>& items);
bool AllRequiredPass(const std::vector<CheckItem>& items);

// The subcommand: loads the config (`config_path` or the default), prints
// the table, returns the exit status (0 when every required item passes).
int Check(const std::string& config_path);

}  // namespace cask::runtime
