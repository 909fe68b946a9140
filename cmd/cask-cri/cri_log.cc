#include "cmd/cask-cri/cri_log.h"

#include <map>

namespace cask::cri {

Result<std::vector<LogLine>> ParseCriLog(std::string_view text) {
  std::vector<LogLine> out;
  std::map<std::string, LogLine> pending;  // partial line per stream
  size_t lineno = 0;
  while (!text.empty()) {
    ++lineno;
    size_t nl = text.find('\n');
    std::string_view rec = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (rec.empty()) continue;
    auto bad = [&](const char* why) {
      return Error::InvalidArgument("line " + std::to_string(lineno) + ": not a CRI log record (" + why + ")");
    };
    size_t s1 = rec.find(' ');
    if (s1 == std::string_view::npos || s1 == 0) return bad("no time");
    size_t s2 = rec.find(' ', s1 + 1);
    if (s2 == std::string_view::npos) return bad("no stream");
    std::string_view stream = rec.substr(s1 + 1, s2 - s1 - 1);
    if (stream != "stdout" && stream != "stderr") return bad("stream is neither stdout nor stderr");
    // The tag is F or P; the content follows one space (and may be empty,
    // with or without that space).
    std::string_view tag = rec.substr(s2 + 1, 1);
    if (tag != "F" && tag != "P") return bad("tag is neither F nor P");
    std::string_view content;
    if (rec.size() > s2 + 2) {
      if (rec[s2 + 2] != ' ') return bad("no space after the tag");
      content = rec.substr(s2 + 3);
    }
    LogLine& p = pending[std::string(stream)];
    p.stream = stream;
    p.time = rec.substr(0, s1);
    p.text += content;
    if (tag == "F") {
      out.push_back(std::move(p));
      pending.erase(std::string(stream));
    }
  }
  for (auto& [stream, p] : pending) out.push_back(std::move(p));
  return out;
}

std::vector<LogLine> Tail(std::vector<LogLine> lines, int64_t tail) {
  if (tail < 0 || static_cast<uint64_t>(tail) >= lines.size()) return lines;
  lines.erase(lines.begin(), lines.end() - tail);
  return lines;
}

}  // namespace cask::cri
