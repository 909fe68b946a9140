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

// `on_shutdown_when_empty` runs when Shutdown arrives and no task is left.
void RegisterTaskService(rpc::Server& server, TaskService& svc, std::function<void()> on_shutdown_when_empty);

// The config_path of a CreateTaskRequest.options Any: runtimeoptions.v1.Options
// (bare or "type.googleapis.com/"-prefixed type URL); an empty Any means
// none. Any other type is INVALID_ARGUMENT naming it.
Result<std::string> ConfigPathFromOptions(std::string_view type_url, std::string_view value);

// The ServiceFactory of containerd-shim-cask-v2: a TaskService over real
// sandboxes, with the configuration loaded from the options' ConfigPath or
// /etc/cask/configuration.toml.
Result<std::unique_ptr<ShimService>> NewCaskService(DaemonContext& ctx);

}  // namespace cask::shim
