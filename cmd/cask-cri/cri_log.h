// The CRI container log format, as containerd writes it from a container's
// stdout and stderr: one record per line,
//   <RFC3339Nano time> <stdout|stderr> <F|P> <content>
// where P ("partial") means the content continues in the next record of
// the same stream and F ends the line. `cask-cri logs` reads these files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"

namespace cask::cri {

struct LogLine {
  std::string time;    // the time of the line's last record
  std::string stream;  // "stdout" or "stderr"
  std::string text;    // without the newline; partial records joined
};

// Parses a whole log file's text. Partial records are joined with the
// following records of the same stream; a trailing partial (the container
// is still writing) is returned as a line of its own. INVALID_ARGUMENT
// names the 1-based line number of a record that does not parse.
Result<std::vector<LogLine>> ParseCriLog(std::string_view text);

// The last `tail` lines (all of them when tail < 0).
std::vector<LogLine> Tail(std::vector<LogLine> lines, int64_t tail);

}  // namespace cask::cri
