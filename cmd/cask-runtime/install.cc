#include "cmd/cask-runtime/install.h"

#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <set>
#include <sstream>
#include <toml++/toml.h>
#include <vector>

#include "lib/base/fs.h"

namespace cask::runtime {

namespace {

Result<toml::table> ParseToml(std::string_view text, const std::string& what) {
  try {
    return toml::parse(text, what);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << what << ": " << e.description() << " (line " << e.source().begin.line << ", column "
       << e.source().begin.column << ")";
    return Error::InvalidArgument(os.str());
  }
}

// A TOML basic string holding `s`.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// The table at `key` in `t`, created if absent; nullptr if `key` holds
// something else.
toml::table* SubTable(toml::table& t, std::string_view key) {
  auto [it, inserted] = t.insert(key, toml::table{});
  return it->second.as_table();
}

// The top-level `imports` as strings; INVALID_ARGUMENT if it is not an
// array of strings. `present` tells whether the key exists.
Result<std::vector<std::string>> Imports(const toml::table& root, bool* present) {
  std::vector<std::string> out;
  const toml::node* n = root.get("imports");
  *present = n != nullptr;
  if (n == nullptr) return out;
  const toml::array* a = n->as_array();
  if (a == nullptr) return Error::InvalidArgument("top-level \"imports\" is not an array");
  for (const auto& e : *a) {
    auto s = e.value<std::string>();
    if (!s) return Error::InvalidArgument("top-level \"imports\" holds something other than strings");
    out.push_back(*s);
  }
  return out;
}

// Byte offset of a 1-based (line, column) position in `text`.
size_t OffsetOf(std::string_view text, toml::source_index line, toml::source_index column) {
  size_t off = 0;
  for (toml::source_index l = 1; l < line && off < text.size(); ++l) {
    size_t nl = text.find('\n', off);
    if (nl == std::string_view::npos) return text.size();
    off = nl + 1;
  }
  return std::min(text.size(), off + (column > 0 ? column - 1 : 0));
}

Result<std::string> EditImports(std::string_view text, const std::string& path, bool add) {
  CASK_ASSIGN_OR_RETURN(toml::table root, ParseToml(text, "containerd config"));
  bool present = false;
  CASK_ASSIGN_OR_RETURN(std::vector<std::string> imports, Imports(root, &present));
  bool listed = std::find(imports.begin(), imports.end(), path) != imports.end();
  if (add == listed) return std::string(text);
  if (add) {
    imports.push_back(path);
  } else {
    imports.erase(std::remove(imports.begin(), imports.end(), path), imports.end());
  }
  std::string expr;
  if (!imports.empty()) {
    expr = "imports = [";
    for (size_t i = 0; i < imports.size(); ++i) expr += (i ? ", " : "") + Quote(imports[i]);
    expr += "]";
  }

  std::string out;
  if (!present) {
    out = expr + "\n" + std::string(text);
  } else {
    // From the key to the end of its array, as the parser saw them.
    const toml::key* key = nullptr;
    for (auto&& [k, v] : root) {
      if (k.str() == "imports") key = &k;
    }
    const toml::source_region& kr = key->source();
    const toml::source_region& vr = root.get("imports")->source();
    size_t begin = OffsetOf(text, kr.begin.line, kr.begin.column);
    size_t end = OffsetOf(text, vr.end.line, vr.end.column);
    if (expr.empty()) {
      // Drop the rest of the line when only blanks are left on it.
      size_t e = end;
      while (e < text.size() && (text[e] == ' ' || text[e] == '\t')) ++e;
      if (e < text.size() && text[e] == '\n') end = e + 1;
    }
    out = std::string(text.substr(0, begin)) + expr + std::string(text.substr(end));
  }

  // The edit must change `imports` and nothing else.
  auto check = ParseToml(out, "edited containerd config");
  bool now_present = false;
  auto now = check.ok() ? Imports(*check, &now_present) : Result<std::vector<std::string>>(check.error());
  toml::table before = root, after = check.ok() ? *check : toml::table{};
  before.erase("imports");
  after.erase("imports");
  if (!now.ok() || *now != imports || before != after) {
    return Error::InvalidArgument("cannot edit \"imports\" in place; add " + Quote(path) +
                                  " to the top-level imports of containerd's config by hand");
  }
  return out;
}

bool IsFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

mode_t ModeOr(const std::string& p, mode_t dflt) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? (st.st_mode & 07777) : dflt;
}

// containerd's rule for an import: relative to the importing file's
// directory; glob patterns expand (sorted).
std::vector<std::string> ResolveImport(const std::string& parent, const std::string& imp) {
  std::string p = imp.empty() || imp[0] == '/' ? imp : JoinPath(Dirname(parent), imp);
  if (p.find_first_of("*?[") == std::string::npos) return {p};
  std::vector<std::string> out;
  glob_t g{};
  if (::glob(p.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  return out;
}

const toml::table* CriSection(const toml::table& root) {
  const toml::table* plugins = root["plugins"].as_table();
  return plugins ? (*plugins)[kCriPlugin].as_table() : nullptr;
}

// The CRI section the drop-in holds: `main_cri` (or an empty section) with
// `cask` as handler "cask". A runtimes table replaces containerd's default
// one, so the default runc entry is written when `main_cri` has none.
Result<toml::table> CriWithCask(const toml::table* main_cri, toml::table cask) {
  toml::table cri = main_cri ? *main_cri : toml::table{};
  toml::table* containerd = SubTable(cri, "containerd");
  if (containerd == nullptr) return Error::InvalidArgument("the CRI section's \"containerd\" is not a table");
  bool had_runtimes = containerd->contains("runtimes");
  toml::table* runtimes = SubTable(*containerd, "runtimes");
  if (runtimes == nullptr) return Error::InvalidArgument("\"containerd.runtimes\" is not a table");
  if (!had_runtimes) runtimes->insert("runc", toml::table{{"runtime_type", "io.containerd.runc.v2"}});
  runtimes->insert_or_assign(kCaskHandler, std::move(cask));
  return cri;
}

}  // namespace

std::string DropInPath(const ContainerdInstall& in) {
  return in.dropin.empty() ? JoinPath(Dirname(in.config), "conf.d/cask.toml") : in.dropin;
}

Result<std::string> RenderDropIn(std::string_view main_text, const ContainerdInstall& in) {
  CASK_ASSIGN_OR_RETURN(toml::table main, ParseToml(main_text, in.config));
  if (auto v = main["version"].value<int64_t>(); v && *v != 2) {
    return Error::InvalidArgument(in.config + ": config version " + std::to_string(*v) +
                                  "; cask's drop-in is for containerd 1.6 (version = 2)");
  }
  const toml::table* main_cri = nullptr;
  if (const toml::node* plugins = main.get("plugins")) {
    if (!plugins->is_table()) return Error::InvalidArgument(in.config + ": \"plugins\" is not a table");
    if (const toml::node* n = plugins->as_table()->get(kCriPlugin)) {
      if (!n->is_table()) return Error::InvalidArgument(in.config + ": plugins." + Quote(kCriPlugin) + " is not a table");
      main_cri = n->as_table();
    }
  }
  toml::table cask{{"runtime_type", kCaskRuntimeType},
                   {"pod_annotations", toml::array{"io.cask.*"}},
                   {"privileged_without_host_devices", true}};
  if (!in.cask_config.empty()) cask.insert("options", toml::table{{"ConfigPath", in.cask_config}});
  auto cri_or = CriWithCask(main_cri, std::move(cask));
  if (!cri_or.ok()) return std::move(cri_or).error().Wrap(in.config);
  toml::table cri = std::move(*cri_or);
  toml::table root{{"version", 2}, {"plugins", toml::table{{kCriPlugin, std::move(cri)}}}};
  std::ostringstream os;
  os << "# containerd runtime handler \"cask\": pods with runtimeClassName cask run in\n"
     << "# cask VMs. Written by `cask-runtime install --containerd` from the CRI\n"
     << "# section of " << in.config << " (containerd 1.6 replaces a plugin's\n"
     << "# whole section with an imported one): after editing that section, run the\n"
     << "# install again. `cask-runtime install --containerd --uninstall` removes it.\n"
     << toml::toml_formatter(root) << "\n";
  return os.str();
}

Result<std::string> AddImport(std::string_view main_text, const std::string& path) {
  return EditImports(main_text, path, true);
}

Result<std::string> RemoveImport(std::string_view main_text, const std::string& path) {
  return EditImports(main_text, path, false);
}

Status InstallContainerd(const ContainerdInstall& in) {
  const std::string dropin = DropInPath(in);
  if (dropin.empty() || dropin[0] != '/') return Error::InvalidArgument("drop-in path must be absolute: " + dropin);
  std::string main_text;
  bool main_exists = IsFile(in.config);
  if (main_exists) {
    CASK_ASSIGN_OR_RETURN(main_text, ReadFile(in.config));
  }
  CASK_ASSIGN_OR_RETURN(std::string dropin_text, RenderDropIn(main_text, in));
  std::string base = main_exists ? main_text : std::string("version = 2\n");
  CASK_ASSIGN_OR_RETURN(std::string new_main, AddImport(base, dropin));

  CASK_TRY(MkdirAll(Dirname(dropin)));
  CASK_TRY(WriteFileAtomic(dropin, dropin_text, 0644));
  if (!main_exists || new_main != main_text) {
    CASK_TRY(MkdirAll(Dirname(in.config)));
    CASK_TRY(WriteFileAtomic(in.config, new_main, ModeOr(in.config, 0644)));
  }
  return Ok();
}

Status UninstallContainerd(const ContainerdInstall& in) {
  const std::string dropin = DropInPath(in);
  if (IsFile(in.config)) {
    CASK_ASSIGN_OR_RETURN(std::string text, ReadFile(in.config));
    CASK_ASSIGN_OR_RETURN(std::string edited, RemoveImport(text, dropin));
    if (edited != text) CASK_TRY(WriteFileAtomic(in.config, edited, ModeOr(in.config, 0644)));
  }
  if (::unlink(dropin.c_str()) != 0 && errno != ENOENT) return Error::Sys(errno, "remove " + dropin);
  return Ok();
}

ContainerdCaskStatus InspectContainerd(const std::string& config) {
  ContainerdCaskStatus st;
  auto text = ReadFile(config);
  if (!text.ok()) {
    st.detail = text.error().ToString() + " (containerd's built-in defaults have no cask runtime)";
    return st;
  }
  auto main = ParseToml(*text, config);
  if (!main.ok()) {
    st.detail = main.error().ToString();
    return st;
  }
  // containerd 1.6: the main file, then its imports breadth-first, each
  // imported plugin section replacing the one before.
  toml::table cri;
  std::string cri_from;
  if (const toml::table* c = CriSection(*main)) {
    cri = *c;
    cri_from = config;
  }
  std::vector<std::pair<std::string, toml::table>> pending;
  std::set<std::string> loaded = {config};
  auto queue_imports = [&](const std::string& file, const toml::table& t) {
    bool present = false;
    auto imps = Imports(t, &present);
    if (!imps.ok()) return;
    for (const auto& imp : *imps) {
      for (const auto& p : ResolveImport(file, imp)) {
        if (!loaded.insert(p).second) continue;
        auto itext = ReadFile(p);
        if (!itext.ok()) {
          st.detail += (st.detail.empty() ? "" : "; ") + itext.error().ToString();
          continue;
        }
        auto parsed = ParseToml(*itext, p);
        if (!parsed.ok()) {
          st.detail += (st.detail.empty() ? "" : "; ") + parsed.error().ToString();
          continue;
        }
        pending.emplace_back(p, std::move(*parsed));
      }
    }
  };
  queue_imports(config, *main);
  for (size_t i = 0; i < pending.size(); ++i) {
    auto [file, t] = pending[i];
    if (const toml::table* c = CriSection(t)) {
      cri = *c;
      cri_from = file;
    }
    queue_imports(file, t);
  }
  if (!st.detail.empty()) return st;  // an unreadable import: containerd would not start

  const toml::node* type = cri.at_path("containerd.runtimes.cask.runtime_type").node();
  auto type_str = type ? type->value<std::string>() : std::nullopt;
  if (!type_str) {
    st.detail = "no runtime handler \"cask\" in the CRI section" +
                (cri_from.empty() ? std::string(" (none is configured)") : " of " + cri_from) +
                "; run: cask-runtime install --containerd";
    return st;
  }
  if (*type_str != kCaskRuntimeType) {
    st.detail = "handler \"cask\" in " + cri_from + " has runtime_type \"" + *type_str + "\", not \"" +
                kCaskRuntimeType + "\"";
    return st;
  }
  st.configured = true;
  st.detail = "handler \"cask\" (" + std::string(kCaskRuntimeType) + ") from " + cri_from;
  // A drop-in made from an older main CRI section silently reverts the
  // main file's later edits.
  if (cri_from != config) {
    toml::table cask = *cri.at_path("containerd.runtimes.cask").as_table();
    auto expected = CriWithCask(CriSection(*main), std::move(cask));
    if (!expected.ok() || *expected != cri) {
      st.detail += "; it differs from the CRI section of " + config +
                   " (containerd uses the drop-in's): run cask-runtime install --containerd again";
    }
  }
  return st;
}

int Install(const ContainerdInstall& in, bool uninstall) {
  const std::string dropin = DropInPath(in);
  if (uninstall) {
    if (auto st = UninstallContainerd(in); !st.ok()) {
      std::fprintf(stderr, "cask-runtime install --uninstall: %s\n", st.error().ToString().c_str());
      return 1;
    }
    std::printf("removed %s and its import from %s; restart containerd to unload it\n", dropin.c_str(),
                in.config.c_str());
    return 0;
  }
  if (auto st = InstallContainerd(in); !st.ok()) {
    std::fprintf(stderr, "cask-runtime install: %s\n", st.error().ToString().c_str());
    return 1;
  }
  ContainerdCaskStatus now = InspectContainerd(in.config);
  if (!now.configured) {
    std::fprintf(stderr, "cask-runtime install: wrote %s, but containerd would not load it: %s\n", dropin.c_str(),
                 now.detail.c_str());
    return 1;
  }
  std::printf("wrote %s (imported by %s): %s\nrestart containerd to load it\n", dropin.c_str(), in.config.c_str(),
              now.detail.c_str());
  return 0;
}

}  // namespace cask::runtime
