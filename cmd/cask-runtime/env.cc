#include "cmd/cask-runtime/env.h"

#include <cstdio>

#include "lib/config/config.h"
#include "lib/pool/pooled_hypervisor.h"

namespace cask::runtime {

int Env(const std::string& config_path) {
  auto cfg = config_path.empty() ? config::LoadDefault() : config::LoadFile(config_path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "cask-runtime: %s\n", cfg.error().ToString().c_str());
    return 1;
  }
  std::fputs(config::ToToml(*cfg).c_str(), stdout);
  // The pool's state, as a comment (the output stays a valid configuration).
  if (cfg->pool.enabled) {
    auto s = pool::QueryStatus(cfg->pool.socket);
    if (s.ok()) {
      std::printf("# pool: %s answering, size %u, ready %u, booting %u, handed over %llu\n", cfg->pool.socket.c_str(),
                  s->size, s->ready, s->booting, static_cast<unsigned long long>(s->handed_over));
    } else {
      std::printf("# pool: %s not answering (pods boot cold)\n", cfg->pool.socket.c_str());
    }
  }
  return 0;
}

}  // namespace cask::runtime
