// Structured logging, one Logger per subsystem.
//
// Lines are in logrus text format, which containerd copies verbatim from a
// shim's log pipe into its own log:
//   time="2026-11-27T08:00:00.000000000Z" level=info msg="vm started" subsystem=qemu sandbox=abc
//
// A Logger holds a sink fd it does not own (the caller keeps the fd alive for
// the Logger's lifetime) plus fixed fields; With() derives a logger with more
// fields. Each line is written with a single write(2), so concurrent use from
// several threads is safe and lines do not interleave.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cask {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

class Logger {
 public:
  using Fields = std::vector<std::pair<std::string, std::string>>;

  // A logger that discards everything.
  Logger() = default;
  Logger(int fd, LogLevel min_level, std::string subsystem);

  Logger With(std::string key, std::string value) const;
  Logger WithSubsystem(std::string subsystem) const;

  void Debug(std::string_view msg, const Fields& extra = {}) const { Log(LogLevel::kDebug, msg, extra); }
  void Info(std::string_view msg, const Fields& extra = {}) const { Log(LogLevel::kInfo, msg, extra); }
  void Warn(std::string_view msg, const Fields& extra = {}) const { Log(LogLevel::kWarn, msg, extra); }
  void Error(std::string_view msg, const Fields& extra = {}) const { Log(LogLevel::kError, msg, extra); }
  void Log(LogLevel level, std::string_view msg, const Fields& extra) const;

  bool enabled(LogLevel level) const { return fd_ >= 0 && level >= min_level_; }

 private:
  int fd_ = -1;
  LogLevel min_level_ = LogLevel::kInfo;
  Fields fields_;
};

// Quotes a value for logfmt when it needs it (empty, or holding a space, a
// control character, '"', '=', '\\' or a byte >= 0x7f): see DoubleQuoted in
// quote.h. Other values are returned as they are.
std::string LogfmtValue(std::string_view v);

}  // namespace cask
