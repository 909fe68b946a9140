#include "cmd/cask-agent/service.h"

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "cmd/cask-agent/network.h"
#include "proto/agent.pb.h"

namespace cask::agent {

namespace {

// Registers one method with logging around it: `fields` names the ids in
// the request for the log line.
template <typename Req, typename Resp>
void Add(rpc::Server& server, const Logger& log, const char* method,
         std::function<Logger::Fields(const Req&)> fields,
         std::function<Result<Resp>(const rpc::CallContext&, const Req&)> fn, rpc::Lane lane = rpc::Lane::kShort) {
  Logger mlog = log.With("method", method);
  server.RegisterTyped<Req, Resp>(
      kAgentService, method,
      [mlog, fields = std::move(fields), fn = std::move(fn)](const rpc::CallContext& ctx,
                                                                const Req& req) -> Result<Resp> {
        Logger::Fields f = fields ? fields(req) : Logger::Fields{};
        auto start = std::chrono::steady_clock::now();
        mlog.Debug("rpc", f);
        Result<Resp> r = fn(ctx, req);
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
        if (!r.ok()) {
          f.emplace_back("code", std::string(CodeName(r.error().code())));
          f.emplace_back("error", r.error().ToString());
          f.emplace_back("us", std::to_string(us.count()));
          mlog.Warn("rpc failed", f);
        } else if (mlog.enabled(LogLevel::kDebug)) {
          f.emplace_back("us", std::to_string(us.count()));
          mlog.Debug("rpc done", f);
        }
        return r;
      },
      lane);
}

v1::OutputStream ToProto(StreamKind k) { return k == StreamKind::kStdout ? v1::STDOUT : v1::STDERR; }

template <typename Req>
Logger::Fields ContainerFields(const Req& r) {
  return {{"container", r.container_id()}};
}

template <typename Req>
Logger::Fields ProcessFields(const Req& r) {
  return {{"container", r.container_id()}, {"exec", r.exec_id()}};
}

net::NetworkSetup NetworkRequestFromProto(const v1::ConfigureNetworkRequest& req) {
  net::NetworkSetup out;
  for (const auto& i : req.interfaces()) {
    net::InterfaceSetup n{i.name(), i.mac(), i.mtu(), {}, i.current_mac()};
    for (const auto& a : i.addresses()) n.addresses.emplace_back(a.address(), a.prefix_len());
    out.interfaces.push_back(std::move(n));
  }
  for (const auto& r : req.routes())
    out.routes.push_back(net::RouteSetup{r.dest(), r.dest_prefix_len(), r.gateway(), r.source(), r.device(), r.scope()});
  for (const auto& n : req.neighbours()) out.neighbours.push_back(net::NeighbourSetup{n.address(), n.mac(), n.device()});
  return out;
}

template <typename Resp>
Result<Resp> EmptyOr(Status st) {
  if (!st.ok()) return std::move(st).error();
  return Resp();
}

// The cgroup readings on the wire, field for field (the host's
// AgentClient::StatsContainer reads them back into a sys::CgroupStats).
v1::StatsContainerResponse StatsResponseOf(const sys::CgroupStats& s) {
  v1::StatsContainerResponse resp;
  for (const auto& [k, v] : s.cpu_stat) (*resp.mutable_cpu_stat())[k] = v;
  resp.set_memory_current(s.memory_current);
  resp.set_memory_max(s.memory_max);
  resp.set_memory_swap_current(s.memory_swap_current);
  for (const auto& [k, v] : s.memory_stat) (*resp.mutable_memory_stat())[k] = v;
  for (const auto& [k, v] : s.memory_events) (*resp.mutable_memory_events())[k] = v;
  resp.set_pids_current(s.pids_current);
  resp.set_pids_max(s.pids_max);
  for (const auto& io : s.io) {
    v1::IoStat* out = resp.add_io();
    out->set_major(io.major);
    out->set_minor(io.minor);
    out->set_rbytes(io.rbytes);
    out->set_wbytes(io.wbytes);
    out->set_rios(io.rios);
    out->set_wios(io.wios);
  }
  return resp;
}

void PutVarint(uint64_t v, std::string& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

}  // namespace

std::string SerializeEvents(const EventBatch& b) {
  // Wire tags (field number << 3 | 2, length-delimited).
  constexpr char kOutputTag = (2 << 3) | 2;  // GetEventsResponse.output
  constexpr char kDataTag = (4 << 3) | 2;    // OutputChunk.data
  v1::GetEventsResponse rest;  // everything but the output, built by protobuf
  rest.set_seq(b.seq);
  for (auto& e : b.exits) {
    v1::ProcessExited* x = rest.add_exits();
    x->set_container_id(e.container_id);
    x->set_exec_id(e.exec_id);
    x->set_exit_status(e.exit.status);
    x->set_exited_at_ns(e.exit.exited_at_ns);
  }
  for (auto& id : b.oom_container_ids) rest.add_oom_container_ids(id);
  // Each chunk: its other fields by protobuf, then the data field by hand
  // (a message's fields may come in any order; repeated ones keep theirs).
  std::vector<std::string> metas;
  metas.reserve(b.output.size());
  size_t total = rest.ByteSizeLong();
  for (auto& o : b.output) {
    v1::OutputChunk meta;
    meta.set_container_id(o.container_id);
    meta.set_exec_id(o.exec_id);
    meta.set_stream(ToProto(o.stream));
    meta.set_eof(o.eof);
    metas.push_back(meta.SerializeAsString());
    const size_t n = o.data.size();
    const size_t inner = metas.back().size() + (n > 0 ? 1 + VarintSize(n) + n : 0);
    total += 1 + VarintSize(inner) + inner;
  }
  std::string out;
  out.reserve(total);
  for (size_t i = 0; i < b.output.size(); ++i) {
    const ByteBlock& data = b.output[i].data;
    const size_t n = data.size();
    out.push_back(kOutputTag);
    PutVarint(metas[i].size() + (n > 0 ? 1 + VarintSize(n) + n : 0), out);
    out += metas[i];
    if (n > 0) {
      out.push_back(kDataTag);
      PutVarint(n, out);
      out.append(data.data(), n);
    }
  }
  rest.AppendToString(&out);
  return out;
}

void RegisterAgentService(rpc::Server& server, Agent& agent, const Logger& log) {
  Logger slog = log.WithSubsystem("service");
  Agent* a = &agent;

  Add<v1::CheckRequest, v1::CheckResponse>(server, slog, "Check", nullptr,
                                           [a](const rpc::CallContext&, const v1::CheckRequest&) {
                                             AgentInfo info = a->Check();
                                             v1::CheckResponse resp;
                                             resp.set_agent_version(info.version);
                                             resp.set_kernel_release(info.kernel_release);
                                             resp.set_uptime_ns(info.uptime_ns);
                                             resp.set_agent_threads(info.threads);
                                             resp.set_agent_rss_bytes(info.rss_bytes);
                                             return Result<v1::CheckResponse>(resp);
                                           });

  Add<v1::SetupSandboxRequest, v1::Empty>(
      server, slog, "SetupSandbox",
      [](const v1::SetupSandboxRequest& r) { return Logger::Fields{{"sandbox", r.sandbox_id()}}; },
      [a](const rpc::CallContext&, const v1::SetupSandboxRequest& req) {
        SandboxSetup s;
        s.sandbox_id = req.sandbox_id();
        s.hostname = req.hostname();
        s.resolv_conf = req.resolv_conf();
        for (const auto& m : req.mounts())
          s.mounts.push_back(GuestMount{m.source(), m.target(), m.fstype(), {m.options().begin(), m.options().end()}});
        return EmptyOr<v1::Empty>(a->SetupSandbox(s));
      });

  Add<v1::ConfigureNetworkRequest, v1::Empty>(
      server, slog, "ConfigureNetwork", nullptr,
      [](const rpc::CallContext&, const v1::ConfigureNetworkRequest& req) {
        return EmptyOr<v1::Empty>(ConfigureGuestNetwork(NetworkRequestFromProto(req)));
      },
      rpc::Lane::kLong);  // waits for the NIC to appear: up to seconds

  Add<v1::ListTcpListenersRequest, v1::ListTcpListenersResponse>(
      server, slog, "ListTcpListeners", nullptr,
      [](const rpc::CallContext&, const v1::ListTcpListenersRequest&) {
        v1::ListTcpListenersResponse resp;
        for (uint16_t p : TcpListeners()) resp.add_ports(p);
        return Result<v1::ListTcpListenersResponse>(resp);
      });

  Add<v1::DestroySandboxRequest, v1::Empty>(server, slog, "DestroySandbox", nullptr,
                                            [a](const rpc::CallContext&, const v1::DestroySandboxRequest&) {
                                              return EmptyOr<v1::Empty>(a->DestroySandbox());
                                            });

  Add<v1::SetTimeRequest, v1::Empty>(server, slog, "SetTime", nullptr,
                                     [a](const rpc::CallContext&, const v1::SetTimeRequest& req) {
                                       return EmptyOr<v1::Empty>(a->SetTime(req.realtime_ns()));
                                     });

  Add<v1::CreateContainerRequest, v1::CreateContainerResponse>(
      server, slog, "CreateContainer", ContainerFields<v1::CreateContainerRequest>,
      [a](const rpc::CallContext&, const v1::CreateContainerRequest& req) -> Result<v1::CreateContainerResponse> {
        CASK_ASSIGN_OR_RETURN(pid_t pid,
                              a->CreateContainer(req.container_id(), req.oci_spec_json(), req.rootfs_path(), req.stdin()));
        v1::CreateContainerResponse resp;
        resp.set_pid(static_cast<uint32_t>(pid));
        return resp;
      });

  Add<v1::StartContainerRequest, v1::StartContainerResponse>(
      server, slog, "StartContainer", ContainerFields<v1::StartContainerRequest>,
      [a](const rpc::CallContext&, const v1::StartContainerRequest& req) -> Result<v1::StartContainerResponse> {
        CASK_ASSIGN_OR_RETURN(pid_t pid, a->StartContainer(req.container_id()));
        v1::StartContainerResponse resp;
        resp.set_pid(static_cast<uint32_t>(pid));
        return resp;
      });

  Add<v1::RemoveContainerRequest, v1::Empty>(
      server, slog, "RemoveContainer", ContainerFields<v1::RemoveContainerRequest>,
      [a](const rpc::CallContext&, const v1::RemoveContainerRequest& req) {
        return EmptyOr<v1::Empty>(a->RemoveContainer(req.container_id(), req.force()));
      });

  Add<v1::ExecProcessRequest, v1::ExecProcessResponse>(
      server, slog, "ExecProcess", ProcessFields<v1::ExecProcessRequest>,
      [a](const rpc::CallContext&, const v1::ExecProcessRequest& req) -> Result<v1::ExecProcessResponse> {
        CASK_ASSIGN_OR_RETURN(pid_t pid,
                              a->ExecProcess(req.container_id(), req.exec_id(), req.process_json(), req.stdin()));
        v1::ExecProcessResponse resp;
        resp.set_pid(static_cast<uint32_t>(pid));
        return resp;
      });

  Add<v1::SignalProcessRequest, v1::Empty>(
      server, slog, "SignalProcess",
      [](const v1::SignalProcessRequest& r) {
        return Logger::Fields{{"container", r.container_id()},
                              {"exec", r.exec_id()},
                              {"signal", std::to_string(r.signal())},
                              {"all", r.all() ? "true" : "false"}};
      },
      [a](const rpc::CallContext&, const v1::SignalProcessRequest& req) {
        return EmptyOr<v1::Empty>(
            a->SignalProcess(req.container_id(), req.exec_id(), static_cast<int>(req.signal()), req.all()));
      });

  Add<v1::WaitProcessRequest, v1::WaitProcessResponse>(
      server, slog, "WaitProcess", ProcessFields<v1::WaitProcessRequest>,
      [a](const rpc::CallContext& ctx, const v1::WaitProcessRequest& req) -> Result<v1::WaitProcessResponse> {
        CASK_ASSIGN_OR_RETURN(ProcessExit e, a->WaitProcess(req.container_id(), req.exec_id(), a->Limits(ctx.deadline, ctx.cancelled)));
        v1::WaitProcessResponse resp;
        resp.set_exit_status(e.status);
        resp.set_exited_at_ns(e.exited_at_ns);
        return resp;
      },
      rpc::Lane::kLong);

  Add<v1::ListProcessesRequest, v1::ListProcessesResponse>(
      server, slog, "ListProcesses", ContainerFields<v1::ListProcessesRequest>,
      [a](const rpc::CallContext&, const v1::ListProcessesRequest& req) -> Result<v1::ListProcessesResponse> {
        CASK_ASSIGN_OR_RETURN(std::vector<pid_t> pids, a->ListProcesses(req.container_id()));
        v1::ListProcessesResponse resp;
        for (pid_t p : pids) resp.add_pids(static_cast<uint32_t>(p));
        return resp;
      });

  Add<v1::WriteStreamRequest, v1::WriteStreamResponse>(
      server, slog, "WriteStdin",
      [](const v1::WriteStreamRequest& r) {
        return Logger::Fields{{"container", r.container_id()}, {"exec", r.exec_id()}, {"len", std::to_string(r.data().size())}};
      },
      [a](const rpc::CallContext&, const v1::WriteStreamRequest& req) -> Result<v1::WriteStreamResponse> {
        CASK_ASSIGN_OR_RETURN(size_t n, a->WriteStdin(req.container_id(), req.exec_id(), req.data()));
        v1::WriteStreamResponse resp;
        resp.set_len(static_cast<uint32_t>(n));
        return resp;
      });

  Add<v1::RemoveProcessRequest, v1::Empty>(server, slog, "RemoveProcess", ProcessFields<v1::RemoveProcessRequest>,
                                           [a](const rpc::CallContext&, const v1::RemoveProcessRequest& req) {
                                             return EmptyOr<v1::Empty>(a->RemoveProcess(req.container_id(), req.exec_id()));
                                           });

  Add<v1::CloseStdinRequest, v1::Empty>(server, slog, "CloseStdin", ProcessFields<v1::CloseStdinRequest>,
                                        [a](const rpc::CallContext&, const v1::CloseStdinRequest& req) {
                                          return EmptyOr<v1::Empty>(a->CloseStdin(req.container_id(), req.exec_id()));
                                        });

  for (auto [method, kind] : {std::pair{"ReadStdout", StreamKind::kStdout}, std::pair{"ReadStderr", StreamKind::kStderr}}) {
    Add<v1::ReadStreamRequest, v1::ReadStreamResponse>(
        server, slog, method, ProcessFields<v1::ReadStreamRequest>,
        [a, kind = kind](const rpc::CallContext& ctx, const v1::ReadStreamRequest& req) -> Result<v1::ReadStreamResponse> {
          CASK_ASSIGN_OR_RETURN(StreamChunk c, a->ReadStream(req.container_id(), req.exec_id(), kind, req.max_len(),
                                                             a->Limits(ctx.deadline, ctx.cancelled)));
          v1::ReadStreamResponse resp;
          resp.set_data(std::move(c.data));
          resp.set_eof(c.eof);
          return resp;
        },
        rpc::Lane::kLong);
  }

  {
    // Registered raw: the reply is serialized by SerializeEvents, not
    // built as a message first.
    Logger mlog = slog.With("method", "GetEvents");
    server.Register(
        kAgentService, "GetEvents",
        [a, mlog](const rpc::CallContext& ctx, const std::string& payload) -> Result<std::string> {
          v1::GetEventsRequest req;
          if (!req.ParseFromString(payload)) return Error::InvalidArgument("cannot parse " + ctx.service + ".GetEvents request");
          mlog.Debug("rpc", {{"ack", std::to_string(req.ack())}});
          auto batch = a->GetEvents(req.ack(), std::chrono::milliseconds(req.wait_ms()), req.max_output_bytes(),
                                    a->Limits(ctx.deadline, ctx.cancelled));
          if (!batch.ok()) {
            mlog.Warn("rpc failed", {{"code", std::string(CodeName(batch.error().code()))},
                                     {"error", batch.error().ToString()}});
            return std::move(batch).error();
          }
          return SerializeEvents(**batch);
        },
        rpc::Lane::kLong);
  }

  Add<v1::GrantOutputRequest, v1::Empty>(
      server, slog, "GrantOutput", nullptr, [a](const rpc::CallContext&, const v1::GrantOutputRequest& req) -> Result<v1::Empty> {
        // Unknown or removed processes are skipped: a grant may race with
        // RemoveProcess, and the host cannot tell.
        for (const auto& c : req.credits())
          (void)a->GrantOutput(c.container_id(), c.exec_id(),
                               c.stream() == v1::STDERR ? StreamKind::kStderr : StreamKind::kStdout, c.bytes(),
                               c.total());
        return v1::Empty();
      });

  Add<v1::TtyWinResizeRequest, v1::Empty>(
      server, slog, "TtyWinResize", ProcessFields<v1::TtyWinResizeRequest>,
      [a](const rpc::CallContext&, const v1::TtyWinResizeRequest& req) {
        return EmptyOr<v1::Empty>(a->ResizeTty(req.container_id(), req.exec_id(), req.rows(), req.cols()));
      });

  Add<v1::StatsContainerRequest, v1::StatsContainerResponse>(
      server, slog, "StatsContainer", ContainerFields<v1::StatsContainerRequest>,
      [a](const rpc::CallContext&, const v1::StatsContainerRequest& req) -> Result<v1::StatsContainerResponse> {
        CASK_ASSIGN_OR_RETURN(sys::CgroupStats s, a->StatsContainer(req.container_id()));
        return StatsResponseOf(s);
      });

  Add<v1::PauseContainerRequest, v1::Empty>(server, slog, "PauseContainer", ContainerFields<v1::PauseContainerRequest>,
                                            [a](const rpc::CallContext&, const v1::PauseContainerRequest& req) {
                                              return EmptyOr<v1::Empty>(a->PauseContainer(req.container_id()));
                                            });

  Add<v1::ResumeContainerRequest, v1::Empty>(server, slog, "ResumeContainer",
                                             ContainerFields<v1::ResumeContainerRequest>,
                                             [a](const rpc::CallContext&, const v1::ResumeContainerRequest& req) {
                                               return EmptyOr<v1::Empty>(a->ResumeContainer(req.container_id()));
                                             });

  Add<v1::UpdateContainerRequest, v1::Empty>(
      server, slog, "UpdateContainer", ContainerFields<v1::UpdateContainerRequest>,
      [a](const rpc::CallContext&, const v1::UpdateContainerRequest& req) {
        return EmptyOr<v1::Empty>(a->UpdateContainer(req.container_id(), req.resources_json()));
      });

  Add<v1::GetOOMEventRequest, v1::OOMEvent>(server, slog, "GetOOMEvent", nullptr,
                                            [a](const rpc::CallContext& ctx,
                                                const v1::GetOOMEventRequest&) -> Result<v1::OOMEvent> {
                                              CASK_ASSIGN_OR_RETURN(std::string id, a->NextOomEvent(a->Limits(ctx.deadline, ctx.cancelled)));
                                              v1::OOMEvent ev;
                                              ev.set_container_id(id);
                                              return ev;
                                            },
                                            rpc::Lane::kLong);
}

}  // namespace cask::agent
