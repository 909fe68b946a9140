// libFuzzer target for the TOML configuration parser (lib/config): the file
// an operator writes, /etc/cask/configuration.toml.
//
// Checks, besides "no crash, no leak, no UB":
//  - every failure is INVALID_ARGUMENT (never an exception or another code);
//  - whatever parses round-trips: Parse(ToToml(c)) succeeds and equals c.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lib/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view toml(reinterpret_cast<const char*>(data), size);
  auto c = cask::config::Parse(toml, "fuzz.toml");
  if (!c.ok()) {
    if (c.error().code() != cask::Code::kInvalidArgument) {
      std::fprintf(stderr, "unexpected error code: %s\n", c.error().ToString().c_str());
      std::abort();
    }
    return 0;
  }
  std::string again = cask::config::ToToml(*c);
  auto back = cask::config::Parse(again, c->source);
  if (!back.ok()) {
    std::fprintf(stderr, "ToToml output does not parse: %s\n%s\n", back.error().ToString().c_str(), again.c_str());
    std::abort();
  }
  if (!(*back == *c)) {
    std::fprintf(stderr, "round trip changed the configuration:\n%s\n", again.c_str());
    std::abort();
  }
  return 0;
}
