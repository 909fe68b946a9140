#include "cmd/cask-runtime/env.h"

#include <cstdio>

#include "lib/config/config.h"

namespace cask::runtime {

int Env(const std::string& config_path) {
  auto cfg = config_path.empty() ? config::LoadDefault() : config::LoadFile(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "cask-runtime: %s\n", cfg.error().ToString().c_str());
    return 1;
  }
  std::fputs(config::ToToml(*cfg).c_str(), stdout);
  return 0;
}

}  // namespace cask::runtime
