// libFuzzer target for the OCI JSON parsers (untrusted input: config.json
// from a bundle, exec process specs and resource updates from containerd).
//
// Checks, besides "no crash, no leak, no UB":
//  - every failure is INVALID_ARGUMENT;
//  - whatever parses round-trips: Parse(ToJson(x)) succeeds and equals x.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "lib/oci/parse.h"

namespace {

template <typename T, typename ParseFn>
void Check(std::string_view input, ParseFn parse, const char* what) {
  cask::Result<T> r = parse(input);
  if (!r.ok()) {
    if (r.error().code() != cask::Code::kInvalidArgument) {
      std::fprintf(stderr, "%s: unexpected error code: %s\n", what, r.error().ToString().c_str());
      std::abort();
    }
    return;
  }
  std::string json = cask::oci::ToJson(*r);
  cask::Result<T> again = parse(json);
  if (!again.ok()) {
    std::fprintf(stderr, "%s: output of ToJson does not parse: %s\n%s\n", what,
                 again.error().ToString().c_str(), json.c_str());
    std::abort();
  }
  if (!(*again == *r)) {
    std::fprintf(stderr, "%s: round trip changed the value:\n%s\n", what, json.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Check<cask::oci::Spec>(input, [](std::string_view s) { return cask::oci::ParseSpec(s); }, "ParseSpec");
  Check<cask::oci::Process>(input, [](std::string_view s) { return cask::oci::ParseProcess(s); },
                            "ParseProcess");
  Check<cask::oci::LinuxResources>(
      input, [](std::string_view s) { return cask::oci::ParseLinuxResources(s); },
      "ParseLinuxResources");
  return 0;
}
