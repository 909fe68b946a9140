#include "cmd/containerd-shim-cask-v2/task_adapter.h"

#include <google/protobuf/empty.pb.h>

#include "github.com/containerd/containerd/api/types/task/task.pb.h"
#include "github.com/containerd/containerd/pkg/runtimeoptions/v1/api.pb.h"
#include "github.com/containerd/containerd/runtime/linux/runctypes/runc.pb.h"
#include "github.com/containerd/containerd/runtime/v2/runc/options/oci.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "lib/hypervisor/hypervisor.h"  // complete type for SandboxOptions
#include "lib/rpc/server.h"
#include "lib/sandbox/sandbox.h"
#include "cmd/containerd-shim-cask-v2/metrics.h"
#include "lib/shim/proto_time.h"

namespace cask::shim {
namespace {

namespace pb = ::containerd::task::v2;
using Empty = ::google::protobuf::Empty;

// The message name of a type URL: everything after the last '/'.
std::string_view TypeName(std::string_view url) {
  size_t slash = url.rfind('/');
  return slash == std::string_view::npos ? url : url.substr(slash + 1);
}

::containerd::v1::types::Status ToProto(ProcessState s) {
  switch (s) {
    case ProcessState::kCreated: return ::containerd::v1::types::CREATED;
    case ProcessState::kRunning: return ::containerd::v1::types::RUNNING;
    case ProcessState::kPaused: return ::containerd::v1::types::PAUSED;
    case ProcessState::kStopped: return ::containerd::v1::types::STOPPED;
    case ProcessState::kDeleted: return ::containerd::v1::types::UNKNOWN;
  }
  return ::containerd::v1::types::UNKNOWN;
}

template <typename Req, typename Resp>
void Reg(rpc::Server& s, const char* method, std::function<Result<Resp>(const Req&)> fn) {
  s.RegisterTyped<Req, Resp>(std::string(kTaskService), method,
                             [fn = std::move(fn)](const rpc::CallContext&, const Req& r) { return fn(r); });
}

Result<Empty> EmptyOr(Status st) {
  if (!st.ok()) return std::move(st).error();
  return Empty();
}

class CaskService : public ShimService {
 public:
  CaskService(DaemonContext& ctx, std::unique_ptr<TaskService> svc) : ctx_(ctx), svc_(std::move(svc)) {}
  void Register(rpc::Server& server) override { RegisterTaskService(server, *svc_, ctx_.request_exit); }
  void Stop() override { svc_->Stop(); }

 private:
  DaemonContext& ctx_;
  std::unique_ptr<TaskService> svc_;
};

}  // namespace

Result<RuntimeOptions> ParseRuntimeOptions(std::string_view type_url, std::string_view value) {
  RuntimeOptions out;
  if (type_url.empty() && value.empty()) return out;
  const std::string_view type = TypeName(type_url);
  const std::string bytes(value);
  auto bad = [&] { return Error::InvalidArgument("cannot parse runtime options (" + std::string(type_url) + ")"); };
  auto note = [&](bool set, const char* field) {
    if (set) out.ignored.push_back(field);
  };
  if (type == kRuntimeOptionsType) {
    ::runtimeoptions::v1::Options o;
    if (!o.ParseFromString(bytes)) return bad();
    if (!o.config_path().empty() && o.config_path()[0] != '/')
      return Error::InvalidArgument("runtime option ConfigPath \"" + o.config_path() + "\" is not an absolute path");
    out.config_path = o.config_path();
    return out;
  }
  if (type == kRuncOptionsType) {
    ::containerd::runc::v1::Options o;
    if (!o.ParseFromString(bytes)) return bad();
    out.io_uid = o.io_uid();
    out.io_gid = o.io_gid();
    out.shim_cgroup = o.shim_cgroup();
    note(o.no_pivot_root(), "no_pivot_root");
    note(o.no_new_keyring(), "no_new_keyring");
    note(!o.binary_name().empty(), "binary_name");
    note(!o.root().empty(), "root");
    note(!o.criu_path().empty(), "criu_path");
    note(o.systemd_cgroup(), "systemd_cgroup");
    note(!o.criu_image_path().empty(), "criu_image_path");
    note(!o.criu_work_path().empty(), "criu_work_path");
    return out;
  }
  if (type == kRuncCreateOptionsType) {
    ::containerd::linux::runc::CreateOptions o;
    if (!o.ParseFromString(bytes)) return bad();
    out.io_uid = o.io_uid();
    out.io_gid = o.io_gid();
    out.shim_cgroup = o.shim_cgroup();
    note(o.no_pivot_root(), "no_pivot_root");
    note(o.open_tcp(), "open_tcp");
    note(o.external_unix_sockets(), "external_unix_sockets");
    note(o.terminal(), "terminal");
    note(o.file_locks(), "file_locks");
    note(o.empty_namespaces_size() > 0, "empty_namespaces");
    note(!o.cgroups_mode().empty(), "cgroups_mode");
    note(o.no_new_keyring(), "no_new_keyring");
    note(!o.criu_work_path().empty(), "criu_work_path");
    note(!o.criu_image_path().empty(), "criu_image_path");
    return out;
  }
  return Error::InvalidArgument("unsupported runtime options type \"" + std::string(type_url) + "\" (cask takes " +
                                std::string(kRuntimeOptionsType) + ", " + std::string(kRuncOptionsType) + " or " +
                                std::string(kRuncCreateOptionsType) + ")");
}

namespace {

// containerd's request as the Task service's parameters: the runtime
// options (runc's or cask's) are parsed here.
Result<CreateTaskParams> CreateParamsOf(const pb::CreateTaskRequest& r) {
  CreateTaskParams p;
  p.id = r.id();
  p.bundle = r.bundle();
  for (const auto& m : r.rootfs())
    p.rootfs.push_back(RootfsMount{m.type(), m.source(), m.target(), {m.options().begin(), m.options().end()}});
  p.stdio = StdioPaths{r.stdin(), r.stdout(), r.stderr(), r.terminal()};
  p.checkpoint = r.checkpoint();
  if (r.has_options()) {
    CASK_ASSIGN_OR_RETURN(RuntimeOptions o, ParseRuntimeOptions(r.options().type_url(), r.options().value()));
    p.config_path = std::move(o.config_path);
    p.io_uid = o.io_uid;
    p.io_gid = o.io_gid;
    p.shim_cgroup = std::move(o.shim_cgroup);
    p.ignored_options = std::move(o.ignored);
  }
  return p;
}

// INVALID_ARGUMENT when the spec is not an OCI process.
Result<ExecParams> ExecParamsOf(const pb::ExecProcessRequest& r) {
  if (r.spec().type_url() != kProcessSpecTypeUrl && TypeName(r.spec().type_url()) != "Process")
    return Error::InvalidArgument("exec spec has type \"" + r.spec().type_url() + "\", want " +
                                  std::string(kProcessSpecTypeUrl));
  ExecParams p;
  p.id = r.id();
  p.exec_id = r.exec_id();
  p.stdio = StdioPaths{r.stdin(), r.stdout(), r.stderr(), r.terminal()};
  p.process_json = r.spec().value();
  return p;
}

pb::StateResponse StateResponseOf(const ProcessStatus& s) {
  pb::StateResponse resp;
  resp.set_id(s.exec_id.empty() ? s.id : s.exec_id);
  resp.set_exec_id(s.exec_id);
  resp.set_bundle(s.bundle);
  resp.set_pid(s.pid);
  resp.set_status(ToProto(s.state));
  resp.set_stdin(s.stdio.stdin_path);
  resp.set_stdout(s.stdio.stdout_path);
  resp.set_stderr(s.stdio.stderr_path);
  resp.set_terminal(s.stdio.terminal);
  if (s.exit) {
    resp.set_exit_status(s.exit->exit_status);
    SetTimestamp(resp.mutable_exited_at(), s.exit->exited_at);
  }
  return resp;
}

}  // namespace

void RegisterTaskService(rpc::Server& server, TaskService& svc, std::function<void()> on_shutdown_when_empty) {
  Reg<pb::CreateTaskRequest, pb::CreateTaskResponse>(server, "Create", [&svc](const pb::CreateTaskRequest& r)
                                                                           -> Result<pb::CreateTaskResponse> {
    CASK_ASSIGN_OR_RETURN(CreateTaskParams p, CreateParamsOf(r));
    CASK_ASSIGN_OR_RETURN(uint32_t pid, svc.Create(p));
    pb::CreateTaskResponse resp;
    resp.set_pid(pid);
    return resp;
  });

  Reg<pb::StartRequest, pb::StartResponse>(server, "Start", [&svc](const pb::StartRequest& r)
                                                                -> Result<pb::StartResponse> {
    CASK_ASSIGN_OR_RETURN(uint32_t pid, svc.Start(r.id(), r.exec_id()));
    pb::StartResponse resp;
    resp.set_pid(pid);
    return resp;
  });

  Reg<pb::DeleteRequest, pb::DeleteResponse>(server, "Delete", [&svc](const pb::DeleteRequest& r)
                                                                   -> Result<pb::DeleteResponse> {
    CASK_ASSIGN_OR_RETURN(ExitInfo e, svc.Delete(r.id(), r.exec_id()));
    pb::DeleteResponse resp;
    resp.set_pid(e.pid);
    resp.set_exit_status(e.exit_status);
    SetTimestamp(resp.mutable_exited_at(), e.exited_at);
    return resp;
  });

  Reg<pb::ExecProcessRequest, Empty>(server, "Exec", [&svc](const pb::ExecProcessRequest& r) -> Result<Empty> {
    CASK_ASSIGN_OR_RETURN(ExecParams p, ExecParamsOf(r));
    return EmptyOr(svc.Exec(p));
  });

  Reg<pb::StateRequest, pb::StateResponse>(server, "State", [&svc](const pb::StateRequest& r)
                                                                -> Result<pb::StateResponse> {
    CASK_ASSIGN_OR_RETURN(ProcessStatus s, svc.State(r.id(), r.exec_id()));
    return StateResponseOf(s);
  });

  Reg<pb::PidsRequest, pb::PidsResponse>(server, "Pids", [&svc](const pb::PidsRequest& r)
                                                             -> Result<pb::PidsResponse> {
    CASK_ASSIGN_OR_RETURN(auto pids, svc.Pids(r.id()));
    pb::PidsResponse resp;
    for (const auto& p : pids) resp.add_processes()->set_pid(p.pid);
    return resp;
  });

  Reg<pb::KillRequest, Empty>(server, "Kill", [&svc](const pb::KillRequest& r) -> Result<Empty> {
    return EmptyOr(svc.Kill(r.id(), r.exec_id(), r.signal(), r.all()));
  });

  Reg<pb::WaitRequest, pb::WaitResponse>(server, "Wait", [&svc](const pb::WaitRequest& r)
                                                             -> Result<pb::WaitResponse> {
    CASK_ASSIGN_OR_RETURN(ExitInfo e, svc.Wait(r.id(), r.exec_id()));
    pb::WaitResponse resp;
    resp.set_exit_status(e.exit_status);
    SetTimestamp(resp.mutable_exited_at(), e.exited_at);
    return resp;
  });

  Reg<pb::PauseRequest, Empty>(server, "Pause",
                               [&svc](const pb::PauseRequest& r) -> Result<Empty> { return EmptyOr(svc.Pause(r.id())); });
  Reg<pb::ResumeRequest, Empty>(server, "Resume", [&svc](const pb::ResumeRequest& r) -> Result<Empty> {
    return EmptyOr(svc.Resume(r.id()));
  });
  Reg<pb::CloseIORequest, Empty>(server, "CloseIO", [&svc](const pb::CloseIORequest& r) -> Result<Empty> {
    if (!r.stdin()) return Empty();  // containerd only ever closes stdin
    return EmptyOr(svc.CloseIo(r.id(), r.exec_id()));
  });
  Reg<pb::ResizePtyRequest, Empty>(server, "ResizePty", [&svc](const pb::ResizePtyRequest& r) -> Result<Empty> {
    return EmptyOr(svc.ResizePty(r.id(), r.exec_id(), r.width(), r.height()));
  });
  Reg<pb::UpdateTaskRequest, Empty>(server, "Update", [&svc](const pb::UpdateTaskRequest& r) -> Result<Empty> {
    if (r.resources().type_url() != kResourcesTypeUrl && TypeName(r.resources().type_url()) != "LinuxResources")
      return Error::InvalidArgument("resources have type \"" + r.resources().type_url() + "\", want " +
                                    std::string(kResourcesTypeUrl));
    return EmptyOr(svc.Update(r.id(), r.resources().value()));
  });

  Reg<pb::StatsRequest, pb::StatsResponse>(server, "Stats", [&svc](const pb::StatsRequest& r)
                                                                -> Result<pb::StatsResponse> {
    CASK_ASSIGN_OR_RETURN(auto stats, svc.Stats(r.id()));
    pb::StatsResponse resp;
    resp.mutable_stats()->set_type_url(kMetricsV2TypeUrl);
    resp.mutable_stats()->set_value(EncodeMetricsV2(stats));
    return resp;
  });

  Reg<pb::ConnectRequest, pb::ConnectResponse>(server, "Connect", [&svc](const pb::ConnectRequest& r)
                                                                      -> Result<pb::ConnectResponse> {
    CASK_ASSIGN_OR_RETURN(ConnectInfo c, svc.Connect(r.id()));
    pb::ConnectResponse resp;
    resp.set_shim_pid(c.shim_pid);
    resp.set_task_pid(c.task_pid);
    return resp;
  });

  Reg<pb::ShutdownRequest, Empty>(server, "Shutdown", [&svc, on_shutdown_when_empty](const pb::ShutdownRequest&)
                                                          -> Result<Empty> {
    // A pod shim keeps serving while any of its tasks remains.
    if (svc.Empty() && on_shutdown_when_empty) on_shutdown_when_empty();
    return Empty();
  });

  Reg<pb::CheckpointTaskRequest, Empty>(server, "Checkpoint", [](const pb::CheckpointTaskRequest&) -> Result<Empty> {
    return Error::Unimplemented("checkpoint is not supported by cask");
  });
}

Result<std::unique_ptr<ShimService>> NewCaskService(DaemonContext& ctx) {
  TaskService::Deps deps;
  deps.ns = ctx.flags.ns;
  deps.log = ctx.log;
  deps.publish = [events = ctx.events](const TaskEvent& e) { events->Publish(e); };
  deps.create_sandbox = [](sandbox::SandboxOptions o) { return sandbox::Sandbox::Create(std::move(o)); };
  deps.load_config = [](const std::string& path) {
    return path.empty() ? config::LoadDefault() : config::LoadFile(path);
  };
  return std::unique_ptr<ShimService>(new CaskService(ctx, std::make_unique<TaskService>(std::move(deps))));
}

}  // namespace cask::shim
