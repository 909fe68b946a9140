#include "cmd/cask-agent/cmdline.h"

namespace cask::agent {

std::vector<std::string> SplitCmdline(std::string_view cmdline) {
  std::vector<std::string> out;
  std::string cur;
  bool in_quotes = false;
  bool have = false;
  for (char c : cmdline) {
    if (c == '"') {
      in_quotes = !in_quotes;
      have = true;
      continue;
    }
    if (!in_quotes && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
      if (have) out.push_back(std::move(cur));
      cur.clear();
      have = false;
      continue;
    }
    cur += c;
    have = true;
  }
  if (have) out.push_back(std::move(cur));
  return out;
}

namespace {

bool ParseBool(std::string_view v, bool* out) {
  if (v == "1" || v == "true" || v == "yes" || v == "on" || v.empty()) {
    *out = true;
    return true;
  }
  if (v == "0" || v == "false" || v == "no" || v == "off") {
    *out = false;
    return true;
  }
  return false;
}

}  // namespace

BootOptions ParseBootOptions(std::string_view cmdline) {
  BootOptions opts;
  for (const std::string& param : SplitCmdline(cmdline)) {
    std::string_view p = param;
    if (p.substr(0, 5) != "cask.") continue;
    size_t eq = p.find('=');
    std::string_view key = p.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : p.substr(eq + 1);
    if (key == "cask.channel") {
      if (value == "serial") {
        opts.channel = ChannelKind::kSerial;
      } else if (value == "vsock") {
        opts.channel = ChannelKind::kVsock;
      } else {
        opts.warnings.push_back("cask.channel: unknown value \"" + std::string(value) +
                                "\" (want serial or vsock); using serial");
      }
    } else if (key == "cask.debug") {
      if (!ParseBool(value, &opts.debug))
        opts.warnings.push_back("cask.debug: bad value \"" + std::string(value) + "\" (want 0 or 1)");
    } else {
      opts.warnings.push_back("unknown parameter " + std::string(key) + " ignored");
    }
  }
  return opts;
}

std::string_view ChannelName(ChannelKind kind) { return kind == ChannelKind::kVsock ? "vsock" : "serial"; }

}  // namespace cask::agent
