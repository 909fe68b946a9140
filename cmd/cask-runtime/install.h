// `cask-runtime install --containerd`: registers cask as a runtime handler
// of containerd 1.6's CRI plugin, so that pods with runtimeClassName
// `cask` (RunPodSandbox runtime_handler "cask") run in cask VMs.
//
// Layout: a drop-in file (default <config dir>/conf.d/cask.toml) holding
// the handler's table, listed in the main config's top-level `imports`.
//
// containerd 1.6 merges an imported file into the main config by replacing
// each plugin's whole section (the imported `plugins."io.containerd.grpc.
// v1.cri"` replaces the main file's, it is not merged key by key). The
// drop-in therefore carries the main config's CRI section as it is at
// install time plus the cask runtime; containerd's defaults for a section
// the main file does not have are kept by writing the default runc entry.
// After editing the main config's CRI section, run install again (check
// reports a drop-in that no longer matches). containerd 2.x merges
// sections key by key; the same drop-in is correct there too.
//
// The main config is edited as text (comments, order and formatting are
// kept): only the `imports` expression changes, and the result is parsed
// again and compared with the original before it is written.
#pragma once

#include <string>
#include <string_view>

#include "lib/base/result.h"

namespace cask::runtime {

inline constexpr const char* kContainerdConfig = "/etc/containerd/config.toml";
inline constexpr const char* kCriPlugin = "io.containerd.grpc.v1.cri";
inline constexpr const char* kCaskHandler = "cask";
inline constexpr const char* kCaskRuntimeType = "io.containerd.cask.v2";

struct ContainerdInstall {
  std::string config = kContainerdConfig;  // containerd's main config
  std::string dropin;                      // "" = <dir of config>/conf.d/cask.toml
  std::string cask_config;                 // cask's config for this handler ("" = cask's default)
};

// The drop-in path for `in` (resolving the default).
std::string DropInPath(const ContainerdInstall& in);

// The drop-in's text for a main config `main_text` (may be empty: no file).
// INVALID_ARGUMENT if the main config does not parse or its CRI section is
// not a table.
Result<std::string> RenderDropIn(std::string_view main_text, const ContainerdInstall& in);

// `main_text` with `path` added to (or removed from) the top-level
// `imports` array; unchanged text if there is nothing to do. An absent
// `imports` gets a new line at the top of the file; an `imports` left empty
// by removal is deleted. INVALID_ARGUMENT if the text does not parse,
// `imports` is not an array of strings, or the edited text would change
// anything but `imports`.
Result<std::string> AddImport(std::string_view main_text, const std::string& path);
Result<std::string> RemoveImport(std::string_view main_text, const std::string& path);

// Writes the drop-in and adds it to the main config's imports (creating a
// minimal main config if there is none). Idempotent.
Status InstallContainerd(const ContainerdInstall& in);
// Removes the import and the drop-in. Idempotent (nothing installed: OK).
Status UninstallContainerd(const ContainerdInstall& in);

// What containerd 1.6 would load for the CRI plugin from `config` and its
// imports, as far as cask is concerned.
struct ContainerdCaskStatus {
  bool configured = false;  // handler "cask" with runtime_type io.containerd.cask.v2
  std::string detail;       // where it comes from, or what is wrong
};
ContainerdCaskStatus InspectContainerd(const std::string& config);

// The subcommand: install or uninstall, printing what was done. Exit status.
int Install(const ContainerdInstall& in, bool uninstall);

}  // namespace cask::runtime
