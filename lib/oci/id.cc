#include "lib/oci/id.h"

#include <cstdio>
#include <string>

namespace cask::oci {
namespace {

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool IsIdChar(char c) { return IsAlnum(c) || c == '_' || c == '.' || c == '-'; }

// The id as it may appear in a message: bounded, non-printing bytes as \xNN.
std::string Quote(std::string_view id) {
  std::string out = "'";
  for (char c : id.substr(0, kMaxIdLength)) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += c;
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  if (id.size() > kMaxIdLength) out += "...";
  return out + "'";
}

}  // namespace

Status ValidateId(std::string_view what, std::string_view id) {
  auto bad = [&](std::string_view why) {
    return Error::InvalidArgument(std::string(what) + " " + Quote(id) + ": " + std::string(why));
  };
  if (id.empty()) return Error::InvalidArgument(std::string(what) + " must not be empty");
  if (id.size() > kMaxIdLength) return bad("longer than " + std::to_string(kMaxIdLength) + " characters");
  if (!IsAlnum(id.front())) return bad("must start with a letter or digit");
  for (char c : id) {
    if (!IsIdChar(c)) return bad("only letters, digits, '_', '.' and '-' are allowed");
  }
  return Ok();
}

}  // namespace cask::oci
