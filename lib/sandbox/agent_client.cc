#include "lib/sandbox/agent_client.h"

#include <optional>
#include <thread>

#include "lib/oci/parse.h"
#include "lib/rpc/client.h"
#include "proto/agent.pb.h"

namespace cask::sandbox {

namespace pb = ::cask::agent::v1;

namespace {

using Timeout = std::optional<std::chrono::nanoseconds>;

// One typed call with the method name as error context.
template <typename Resp, typename Req>
Result<Resp> Invoke(rpc::Client& client, std::string_view method, const Req& req, Timeout timeout) {
  return client.CallTyped<Resp>(kAgentService, method, req, timeout).Context("agent " + std::string(method));
}

template <typename Resp, typename Req>
Status InvokeVoid(rpc::Client& client, std::string_view method, const Req& req, Timeout timeout) {
  auto r = Invoke<Resp>(client, method, req, timeout);
  if (!r.ok()) return std::move(r).error();
  return Ok();
}

AgentInfo ToInfo(const pb::CheckResponse& r) {
  return AgentInfo{r.agent_version(), r.kernel_release(), std::chrono::nanoseconds(r.uptime_ns())};
}

}  // namespace

AgentClient::AgentClient(UniqueFd channel) : AgentClient(std::move(channel), Options{}) {}

AgentClient::AgentClient(UniqueFd channel, Options opts)
    : client_(std::make_unique<rpc::Client>(std::move(channel))), opts_(opts) {}

AgentClient::~AgentClient() = default;

void AgentClient::Close() { client_->Close(); }
bool AgentClient::closed() const { return client_->closed(); }

Result<AgentInfo> AgentClient::WaitReady(std::chrono::milliseconds timeout, const std::function<bool()>& abort) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int attempts = 0;
  for (;;) {
    if (abort && abort()) return Error(Code::kCancelled, "waiting for the agent: aborted");
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      return Error::DeadlineExceeded("the agent did not answer Check within " + std::to_string(timeout.count()) +
                                     " ms (" + std::to_string(attempts) + " attempts)");
    auto attempt = std::min<std::chrono::nanoseconds>(opts_.check_attempt_timeout, deadline - now);
    auto start = std::chrono::steady_clock::now();
    ++attempts;
    auto r = Invoke<pb::CheckResponse>(*client_, "Check", pb::CheckRequest{}, attempt);
    if (r.ok()) return ToInfo(*r);
    if (client_->closed() || r.error().code() == Code::kUnavailable)
      return Error::Unavailable("the agent channel closed before the agent answered: " + r.error().ToString());
    if (r.error().code() != Code::kDeadlineExceeded) return std::move(r).error().Wrap("waiting for the agent");
    // Timed out: the guest has probably not opened its end yet. Avoid a busy
    // loop if the timeout fired early.
    auto spent = std::chrono::steady_clock::now() - start;
    if (spent < std::chrono::milliseconds(50)) std::this_thread::sleep_for(std::chrono::milliseconds(50) - spent);
  }
}

Result<AgentInfo> AgentClient::Check() {
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::CheckResponse>(*client_, "Check", pb::CheckRequest{}, opts_.call_timeout));
  return ToInfo(r);
}

Status AgentClient::SetupSandbox(const SandboxSetup& setup) {
  pb::SetupSandboxRequest req;
  req.set_sandbox_id(setup.sandbox_id);
  req.set_hostname(setup.hostname);
  req.set_resolv_conf(setup.resolv_conf);
  for (const auto& m : setup.mounts) {
    auto* pm = req.add_mounts();
    pm->set_source(m.source);
    pm->set_target(m.target);
    pm->set_fstype(m.fstype);
    for (const auto& o : m.options) pm->add_options(o);
  }
  return InvokeVoid<pb::Empty>(*client_, "SetupSandbox", req, opts_.call_timeout);
}

Status AgentClient::DestroySandbox(std::optional<std::chrono::milliseconds> timeout) {
  return InvokeVoid<pb::Empty>(*client_, "DestroySandbox", pb::DestroySandboxRequest{},
                               timeout.value_or(opts_.call_timeout));
}

Result<uint32_t> AgentClient::CreateContainer(const std::string& container_id, const oci::Spec& spec,
                                              const std::string& rootfs_path, bool stdin) {
  pb::CreateContainerRequest req;
  req.set_container_id(container_id);
  req.set_oci_spec_json(oci::ToJson(spec));
  req.set_rootfs_path(rootfs_path);
  req.set_stdin(stdin);
  CASK_ASSIGN_OR_RETURN(auto r,
                        Invoke<pb::CreateContainerResponse>(*client_, "CreateContainer", req, opts_.call_timeout));
  return r.pid();
}

Result<uint32_t> AgentClient::StartContainer(const std::string& container_id) {
  pb::StartContainerRequest req;
  req.set_container_id(container_id);
  CASK_ASSIGN_OR_RETURN(auto r,
                        Invoke<pb::StartContainerResponse>(*client_, "StartContainer", req, opts_.call_timeout));
  return r.pid();
}

Status AgentClient::RemoveContainer(const std::string& container_id, bool force) {
  pb::RemoveContainerRequest req;
  req.set_container_id(container_id);
  req.set_force(force);
  return InvokeVoid<pb::Empty>(*client_, "RemoveContainer", req, opts_.call_timeout);
}

Result<uint32_t> AgentClient::ExecProcess(const std::string& container_id, const std::string& exec_id,
                                          const oci::Process& process, bool stdin) {
  pb::ExecProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_process_json(oci::ToJson(process));
  req.set_stdin(stdin);
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::ExecProcessResponse>(*client_, "ExecProcess", req, opts_.call_timeout));
  return r.pid();
}

Status AgentClient::SignalProcess(const std::string& container_id, const std::string& exec_id, int signal,
                                  bool all) {
  if (signal <= 0 || signal >= 65) return Error::InvalidArgument("signal " + std::to_string(signal) + " out of range");
  pb::SignalProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_signal(static_cast<uint32_t>(signal));
  req.set_all(all);
  return InvokeVoid<pb::Empty>(*client_, "SignalProcess", req, opts_.call_timeout);
}

Result<ProcessExit> AgentClient::WaitProcess(const std::string& container_id, const std::string& exec_id) {
  pb::WaitProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::WaitProcessResponse>(*client_, "WaitProcess", req, std::nullopt));
  return ProcessExit{r.exit_status(), r.exited_at_ns()};
}

Result<std::vector<uint32_t>> AgentClient::ListProcesses(const std::string& container_id) {
  pb::ListProcessesRequest req;
  req.set_container_id(container_id);
  CASK_ASSIGN_OR_RETURN(auto r,
                        Invoke<pb::ListProcessesResponse>(*client_, "ListProcesses", req, opts_.call_timeout));
  return std::vector<uint32_t>(r.pids().begin(), r.pids().end());
}

Result<size_t> AgentClient::WriteStdin(const std::string& container_id, const std::string& exec_id,
                                       std::string_view data) {
  pb::WriteStreamRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_data(std::string(data));
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::WriteStreamResponse>(*client_, "WriteStdin", req, std::nullopt));
  if (r.len() > data.size())
    return Error::Internal("agent WriteStdin: agent claims " + std::to_string(r.len()) + " bytes written of " +
                           std::to_string(data.size()));
  return static_cast<size_t>(r.len());
}

Status AgentClient::RemoveProcess(const std::string& container_id, const std::string& exec_id) {
  pb::RemoveProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  return InvokeVoid<pb::Empty>(*client_, "RemoveProcess", req, opts_.call_timeout);
}

Status AgentClient::CloseStdin(const std::string& container_id, const std::string& exec_id) {
  pb::CloseStdinRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  return InvokeVoid<pb::Empty>(*client_, "CloseStdin", req, opts_.call_timeout);
}

namespace {
Result<StreamChunk> ReadStream(rpc::Client& client, std::string_view method, const std::string& container_id,
                               const std::string& exec_id, uint32_t max_len) {
  pb::ReadStreamRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_max_len(max_len);
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::ReadStreamResponse>(client, method, req, std::nullopt));
  // The agent caps replies at 1 MiB; a longer one means a confused peer.
  if (r.data().size() > max_len && max_len != 0)
    return Error::Internal("agent " + std::string(method) + ": " + std::to_string(r.data().size()) +
                           " bytes returned for max_len " + std::to_string(max_len));
  return StreamChunk{std::move(*r.mutable_data()), r.eof()};
}
}  // namespace

Result<StreamChunk> AgentClient::ReadStdout(const std::string& container_id, const std::string& exec_id,
                                            uint32_t max_len) {
  return ReadStream(*client_, "ReadStdout", container_id, exec_id, max_len);
}

Result<StreamChunk> AgentClient::ReadStderr(const std::string& container_id, const std::string& exec_id,
                                            uint32_t max_len) {
  return ReadStream(*client_, "ReadStderr", container_id, exec_id, max_len);
}

Status AgentClient::TtyWinResize(const std::string& container_id, const std::string& exec_id, uint32_t rows,
                                 uint32_t cols) {
  pb::TtyWinResizeRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_rows(rows);
  req.set_cols(cols);
  return InvokeVoid<pb::Empty>(*client_, "TtyWinResize", req, opts_.call_timeout);
}

Result<ContainerStats> AgentClient::StatsContainer(const std::string& container_id) {
  pb::StatsContainerRequest req;
  req.set_container_id(container_id);
  CASK_ASSIGN_OR_RETURN(auto r,
                        Invoke<pb::StatsContainerResponse>(*client_, "StatsContainer", req, opts_.call_timeout));
  ContainerStats s;
  s.cpu_stat.insert(r.cpu_stat().begin(), r.cpu_stat().end());
  s.memory_current = r.memory_current();
  s.memory_max = r.memory_max();
  s.memory_swap_current = r.memory_swap_current();
  s.memory_stat.insert(r.memory_stat().begin(), r.memory_stat().end());
  s.memory_events.insert(r.memory_events().begin(), r.memory_events().end());
  s.pids_current = r.pids_current();
  s.pids_max = r.pids_max();
  for (const auto& io : r.io())
    s.io.push_back(ContainerStats::Io{io.major(), io.minor(), io.rbytes(), io.wbytes(), io.rios(), io.wios()});
  return s;
}

Status AgentClient::PauseContainer(const std::string& container_id) {
  pb::PauseContainerRequest req;
  req.set_container_id(container_id);
  return InvokeVoid<pb::Empty>(*client_, "PauseContainer", req, opts_.call_timeout);
}

Status AgentClient::ResumeContainer(const std::string& container_id) {
  pb::ResumeContainerRequest req;
  req.set_container_id(container_id);
  return InvokeVoid<pb::Empty>(*client_, "ResumeContainer", req, opts_.call_timeout);
}

Status AgentClient::UpdateContainer(const std::string& container_id, const oci::LinuxResources& resources) {
  pb::UpdateContainerRequest req;
  req.set_container_id(container_id);
  req.set_resources_json(oci::ToJson(resources));
  return InvokeVoid<pb::Empty>(*client_, "UpdateContainer", req, opts_.call_timeout);
}

Result<std::string> AgentClient::GetOOMEvent() {
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::OOMEvent>(*client_, "GetOOMEvent", pb::GetOOMEventRequest{}, std::nullopt));
  return std::string(r.container_id());
}

}  // namespace cask::sandbox
