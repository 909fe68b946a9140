#include "lib/base/log.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "lib/base/quote.h"

namespace cask {

Logger::Logger(int fd, LogLevel min_level, std::string subsystem) : fd_(fd), min_level_(min_level) {
  if (!subsystem.empty()) fields_.emplace_back("subsystem", std::move(subsystem));
}

Logger Logger::With(std::string key, std::string value) const {
  Logger l = *this;
  l.fields_.emplace_back(std::move(key), std::move(value));
  return l;
}

Logger Logger::WithSubsystem(std::string subsystem) const {
  Logger l = *this;
  for (auto& f : l.fields_) {
    if (f.first == "subsystem") {
      f.second = std::move(subsystem);
      return l;
    }
  }
  l.fields_.emplace_back("subsystem", std::move(subsystem));
  return l;
}

std::string LogfmtValue(std::string_view v) {
  bool quote = v.empty();
  for (char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) >= 0x7f) {
      quote = true;
      break;
    }
  }
  if (!quote) return std::string(v);
  return DoubleQuoted(v);
}

void Logger::Log(LogLevel level, std::string_view msg, const Fields& extra) const {
  if (!enabled(level)) return;
  static constexpr const char* kNames[] = {"debug", "info", "warning", "error"};
  auto now = std::chrono::system_clock::now();
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(ns % 1000000000));
  std::string line = "time=\"";
  line += ts;
  line += "\" level=";
  line += kNames[static_cast<int>(level)];
  line += " msg=";
  line += LogfmtValue(msg);
  for (const auto* fs : {&fields_, &extra}) {
    for (const auto& [k, v] : *fs) {
      line += ' ';
      line += k;
      line += '=';
      line += LogfmtValue(v);
    }
  }
  line += '\n';
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace cask
