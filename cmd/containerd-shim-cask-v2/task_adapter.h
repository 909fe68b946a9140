// The ttrpc edge of the Task service: registers containerd.task.v2.Task on
// an rpc::Server and converts between containerd's protobuf messages and
// TaskService's domain types. Errors keep their code (NOT_FOUND,
// ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, ...), which
// containerd maps to its errdefs classes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/shim/daemon.h"
#include "cmd/containerd-shim-cask-v2/task_service.h"

namespace cask::rpc {
class Server;
}

namespace cask::shim {

inline constexpr std::string_view kTaskService = "containerd.task.v2.Task";
inline constexpr std::string_view kProcessSpecTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process";
inline constexpr std::string_view kResourcesTypeUrl =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
inline constexpr std::string_view kRuntimeOptionsType = "runtimeoptions.v1.Options";
// runc's options, which containerd 1.6's Go client sends to any runtime.
inline constexpr std::string_view kRuncOptionsType = "containerd.runc.v1.Options";
inline constexpr std::string_view kRuncCreateOptionsType = "containerd.linux.runc.CreateOptions";

// `on_shutdown_when_empty` runs when Shutdown arrives and no task is left.
void RegisterTaskService(rpc::Server& server, TaskService& svc, std::function<void()> on_shutdown_when_empty);

// What CreateTaskRequest.options carries, in domain terms.
struct RuntimeOptions {
  std::string config_path;          // runtimeoptions.v1.Options
  uint32_t io_uid = 0, io_gid = 0;  // runc's: the stdio FIFOs' owner
  std::string shim_cgroup;          // runc's: the cgroup the shim joins
  // runc's fields that were set but mean nothing for a VM runtime (the
  // runc binary, its root, criu, no_pivot_root, ...), for a debug log.
  std::vector<std::string> ignored;
};

// Decodes CreateTaskRequest.options (bare or "type.googleapis.com/"-
// prefixed type URL): runtimeoptions.v1.Options, containerd.runc.v1.Options
// or containerd.linux.runc.CreateOptions; an empty Any means none. Any
// other type, or bytes that do not parse, is INVALID_ARGUMENT naming it; a
// relative ConfigPath too.
Result<RuntimeOptions> ParseRuntimeOptions(std::string_view type_url, std::string_view value);

// The ServiceFactory of containerd-shim-cask-v2: a TaskService over real
// sandboxes, with the configuration loaded from the options' ConfigPath or
// /etc/cask/configuration.toml.
Result<std::unique_ptr<ShimService>> NewCaskService(DaemonContext& ctx);

}  // namespace cask::shim
