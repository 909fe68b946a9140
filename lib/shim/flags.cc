#include "lib/shim/flags.h"

#include <optional>

namespace cask::shim {
namespace {

enum class Kind { kString, kBool };

struct FlagDef {
  std::string_view name;
  Kind kind;
};

constexpr FlagDef kFlags[] = {
    {"namespace", Kind::kString}, {"address", Kind::kString}, {"publish-binary", Kind::kString},
    {"id", Kind::kString},        {"bundle", Kind::kString},  {"socket", Kind::kString},
    {"debug", Kind::kBool},       {"v", Kind::kBool},
};

std::optional<Kind> Lookup(std::string_view name) {
  for (const auto& f : kFlags)
    if (f.name == name) return f.kind;
  return std::nullopt;
}

// Go's strconv.ParseBool.
std::optional<bool> ParseBool(std::string_view v) {
  if (v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True") return true;
  if (v == "0" || v == "f" || v == "F" || v == "false" || v == "FALSE" || v == "False") return false;
  return std::nullopt;
}

void Set(Flags& f, std::string_view name, std::string value) {
  if (name == "namespace") f.ns = std::move(value);
  else if (name == "address") f.address = std::move(value);
  else if (name == "publish-binary") f.publish_binary = std::move(value);
  else if (name == "id") f.id = std::move(value);
  else if (name == "bundle") f.bundle = std::move(value);
  else if (name == "socket") f.socket = std::move(value);
}

void SetBool(Flags& f, std::string_view name, bool value) {
  if (name == "debug") f.debug = value;
  else if (name == "v") f.version = value;
}

}  // namespace

std::string_view ActionName(Action a) {
  switch (a) {
    case Action::kStart: return "start";
    case Action::kDelete: return "delete";
    case Action::kDaemon: return "";
  }
  return "";
}

Result<Flags> ParseFlags(const std::vector<std::string>& args) {
  Flags flags;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a.size() < 2 || a[0] != '-') break;  // first non-flag argument ("-" alone too)
    size_t dashes = a[1] == '-' ? 2 : 1;
    if (dashes == 2 && a.size() == 2) {  // "--" terminates the flags
      ++i;
      break;
    }
    std::string_view body = a.substr(dashes);
    if (body.empty() || body[0] == '-' || body[0] == '=')
      return Error::InvalidArgument("bad flag syntax: " + std::string(a));
    std::optional<std::string> inline_value;
    std::string_view name = body;
    if (size_t eq = body.find('='); eq != std::string_view::npos) {
      name = body.substr(0, eq);
      inline_value = std::string(body.substr(eq + 1));
    }
    auto kind = Lookup(name);
    if (!kind) return Error::InvalidArgument("flag provided but not defined: -" + std::string(name));
    if (*kind == Kind::kBool) {
      bool v = true;
      if (inline_value) {
        auto b = ParseBool(*inline_value);
        if (!b)
          return Error::InvalidArgument("invalid boolean value \"" + *inline_value + "\" for flag -" +
                                        std::string(name));
        v = *b;
      }
      SetBool(flags, name, v);
      continue;
    }
    if (inline_value) {
      Set(flags, name, std::move(*inline_value));
      continue;
    }
    if (i + 1 >= args.size()) return Error::InvalidArgument("flag needs an argument: -" + std::string(name));
    Set(flags, name, args[++i]);
  }
  std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (rest.size() > 1) return Error::InvalidArgument("unexpected argument after action: " + rest[1]);
  if (!rest.empty()) {
    if (rest[0] == "start") flags.action = Action::kStart;
    else if (rest[0] == "delete") flags.action = Action::kDelete;
    else return Error::InvalidArgument("unknown action \"" + rest[0] + "\" (want start, delete or none)");
  }
  return flags;
}

std::vector<std::string> DaemonArgs(const Flags& flags) {
  std::vector<std::string> out = {"-namespace", flags.ns, "-id", flags.id, "-address", flags.address,
                                  "-publish-binary", flags.publish_binary};
  if (flags.debug) out.push_back("-debug");
  return out;
}

}  // namespace cask::shim
