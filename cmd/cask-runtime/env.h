// `cask-runtime env`: the effective configuration as TOML.
#pragma once

#include <string>

namespace cask::runtime {

// Prints config::ToToml of `config_path` (or the default configuration);
// returns the exit status (1 if it does not load, with the reason).
int Env(const std::string& config_path);

}  // namespace cask::runtime
