// Kernel module loading for the guest (no modprobe, no udev in the initrd).
//
// The guest builder installs modules in the standard layout
//   /lib/modules/<release>/kernel/.../<name>.ko   (uncompressed)
//   /lib/modules/<release>/modules.dep            (from depmod)
//   /lib/modules/<release>/modules.builtin        (optional)
// and the agent loads a fixed list of modules with their dependencies,
// dependencies first, each at most once, through finit_module(2).
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/log.h"
#include "lib/base/result.h"

namespace cask::agent {

// "kernel/fs/fuse/virtiofs.ko" -> "virtiofs"; dashes become underscores,
// as the kernel names modules ("nf-nat" and "nf_nat" are one module).
std::string ModuleNameFromPath(std::string_view path);
std::string NormalizeModuleName(std::string_view name);

// The parsed modules.dep: module name -> path (relative to the release
// directory) and direct dependencies (module names).
struct ModuleInfo {
  std::string path;
  std::vector<std::string> deps;
};
using ModuleDb = std::map<std::string, ModuleInfo>;

// Parses modules.dep ("path: dep-path dep-path ..." per line; blank lines
// and '#' comments allowed). A line without ':' is an INVALID_ARGUMENT
// naming its line number.
Result<ModuleDb> ParseModulesDep(std::string_view text);

// Parses modules.builtin (one path per line) into module names.
std::set<std::string> ParseModulesBuiltin(std::string_view text);

// The load order for `wanted`: every module after all of its dependencies,
// each once. Wanted modules absent from `db` are returned in `absent` (the
// caller decides whether they are built in); a dependency absent from `db`
// or a dependency cycle is an error naming the module.
struct LoadPlan {
  std::vector<std::string> order;   // module names
  std::vector<std::string> absent;  // wanted but not in modules.dep
};
Result<LoadPlan> PlanModuleLoad(const ModuleDb& db, const std::vector<std::string>& wanted);

// What LoadKernelModules did, for the log.
struct ModuleLoadReport {
  std::vector<std::string> loaded;
  std::vector<std::string> already_loaded;  // EEXIST
  std::vector<std::string> builtin;         // absent from modules.dep, present in the kernel
  std::vector<std::string> missing;         // absent from modules.dep and from the kernel
  std::vector<std::string> failed;          // "name: error"
  // Time spent in finit_module, per module, in load order.
  std::vector<std::pair<std::string, std::chrono::microseconds>> timings;
  std::chrono::microseconds elapsed{0};
};

struct ModuleLoadOptions {
  std::string release_dir;  // /lib/modules/<release>
  std::string sys_module_dir = "/sys/module";
  std::vector<std::string> wanted;
};

// Loads `wanted` and their dependencies. Failing to load one module does not
// stop the others (a module whose dependency failed fails too, with the
// kernel's error); the report lists every outcome. Errors only when
// modules.dep cannot be read or parsed, or the plan cannot be made.
Result<ModuleLoadReport> LoadKernelModules(const ModuleLoadOptions& opts);

// finit_module(2) of one .ko file (".ko.xz/.zst/.gz" are passed with
// MODULE_INIT_COMPRESSED_FILE). EEXIST is returned as ALREADY_EXISTS.
Status LoadModuleFile(const std::string& path);

// The modules the agent needs before it serves the host, for a channel
// kind (`vsock` adds the vsock transport): the virtio transports, the
// console (serial channel) and virtio-fs (SetupSandbox mounts it first).
std::vector<std::string> AgentModules(bool vsock);
// Modules loaded after the channel is up, off the boot path (overlay, the
// free page reporting balloon).
std::vector<std::string> DeferredAgentModules();

}  // namespace cask::agent
