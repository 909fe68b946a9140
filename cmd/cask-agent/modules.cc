#include "cmd/cask-agent/modules.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <functional>

#include "lib/base/fs.h"

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

namespace cask::agent {

namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> SplitWords(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

std::string NormalizeModuleName(std::string_view name) {
  std::string out(name);
  for (char& c : out)
    if (c == '-') c = '_';
  return out;
}

std::string ModuleNameFromPath(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = base.find(".ko");
  if (dot != std::string_view::npos) base = base.substr(0, dot);
  return NormalizeModuleName(base);
}

Result<ModuleDb> ParseModulesDep(std::string_view text) {
  ModuleDb db;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    line = Trim(line);
    if (line.empty() || line.front() == '#') continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      return Error::InvalidArgument("modules.dep line " + std::to_string(line_no) + ": missing ':'");
    std::string_view path = Trim(line.substr(0, colon));
    if (path.empty())
      return Error::InvalidArgument("modules.dep line " + std::to_string(line_no) + ": empty module path");
    ModuleInfo info;
    info.path = std::string(path);
    for (std::string_view dep : SplitWords(line.substr(colon + 1))) info.deps.push_back(ModuleNameFromPath(dep));
    db[ModuleNameFromPath(path)] = std::move(info);
  }
  return db;
}

std::set<std::string> ParseModulesBuiltin(std::string_view text) {
  std::set<std::string> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.front() != '#') out.insert(ModuleNameFromPath(line));
  }
  return out;
}

Result<LoadPlan> PlanModuleLoad(const ModuleDb& db, const std::vector<std::string>& wanted) {
  LoadPlan plan;
  std::set<std::string> done;
  std::set<std::string> visiting;
  // Depth-first: dependencies are appended before their users.
  std::function<Status(const std::string&, const std::string&)> visit =
      [&](const std::string& name, const std::string& needed_by) -> Status {
    if (done.count(name)) return Ok();
    if (visiting.count(name))
      return Error::InvalidArgument("modules.dep: dependency cycle through module " + name);
    auto it = db.find(name);
    if (it == db.end())
      return Error::NotFound("modules.dep: module " + name + " (needed by " + needed_by + ") is not listed");
    visiting.insert(name);
    for (const std::string& dep : it->second.deps) CASK_TRY(visit(dep, name));
    visiting.erase(name);
    done.insert(name);
    plan.order.push_back(name);
    return Ok();
  };
  for (const std::string& raw : wanted) {
    std::string name = NormalizeModuleName(raw);
    if (!db.count(name)) {
      plan.absent.push_back(name);
      continue;
    }
    CASK_TRY(visit(name, name));
  }
  return plan;
}

Status LoadModuleFile(const std::string& path) {
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(path, O_RDONLY));
  int flags = 0;
  if (EndsWith(path, ".xz") || EndsWith(path, ".zst") || EndsWith(path, ".gz")) flags |= MODULE_INIT_COMPRESSED_FILE;
  if (::syscall(SYS_finit_module, fd.get(), "", flags) != 0) {
    int err = errno;
    if (err == EEXIST) return Error::AlreadyExists("module " + path + " is already loaded");
    return Error::Sys(err, "finit_module " + path);
  }
  return Ok();
}

Result<ModuleLoadReport> LoadKernelModules(const ModuleLoadOptions& opts) {
  auto start = std::chrono::steady_clock::now();
  std::string dep_path = JoinPath(opts.release_dir, "modules.dep");
  ModuleDb db;
  if (PathExists(dep_path)) {
    CASK_ASSIGN_OR_RETURN(std::string dep_text, ReadFile(dep_path));
    CASK_ASSIGN_OR_RETURN(db, ParseModulesDep(dep_text).Context("parse " + dep_path));
  }
  std::set<std::string> builtin;
  std::string builtin_path = JoinPath(opts.release_dir, "modules.builtin");
  if (PathExists(builtin_path)) {
    auto text = ReadFile(builtin_path);
    if (text.ok()) builtin = ParseModulesBuiltin(*text);
  }
  CASK_ASSIGN_OR_RETURN(LoadPlan plan, PlanModuleLoad(db, opts.wanted));

  ModuleLoadReport report;
  for (const std::string& name : plan.absent) {
    if (builtin.count(name) || PathExists(JoinPath(opts.sys_module_dir, name)))
      report.builtin.push_back(name);
    else
      report.missing.push_back(name);
  }
  for (const std::string& name : plan.order) {
    auto t0 = std::chrono::steady_clock::now();
    Status st = LoadModuleFile(JoinPath(opts.release_dir, db.at(name).path));
    report.timings.emplace_back(
        name, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0));
    if (st.ok()) {
      report.loaded.push_back(name);
    } else if (st.error().code() == Code::kAlreadyExists) {
      report.already_loaded.push_back(name);
    } else {
      report.failed.push_back(name + ": " + st.error().ToString());
    }
  }
  report.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return report;
}

std::vector<std::string> AgentModules(bool vsock) {
  // Transports first (PCI for pc/q35, MMIO for microvm), then the devices.
  std::vector<std::string> mods = {"virtio_pci", "virtio_mmio", "virtio_console", "fuse", "virtiofs"};
  if (vsock) {
    mods.push_back("vsock");
    mods.push_back("vmw_vsock_virtio_transport");
  }
  return mods;
}

// virtio_balloon: free page reporting (hypervisor.free_page_reporting).
std::vector<std::string> DeferredAgentModules() { return {"overlay", "virtio_balloon"}; }

}  // namespace cask::agent
