// Double-quoted strings with backslash escapes, for the text formats cask
// writes: logfmt values (log.h) and TOML basic strings (lib/config).
//
// Pure: no state, no allocation beyond the returned string.
#pragma once

#include <string>
#include <string_view>

namespace cask {

// `s` between double quotes, with " \ newline tab and carriage return written
// as \" \\ \n \t \r, and every other control character (below 0x20, and DEL)
// as \u00XX. Other bytes, UTF-8 included, are copied as they are. The result
// is a valid TOML basic string and a valid logfmt quoted value.
std::string DoubleQuoted(std::string_view s);

}  // namespace cask
