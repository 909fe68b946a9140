#include "cmd/cask-cri/commands.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>

#include "cmd/cask-cri/client.h"
#include "cmd/cask-cri/cri_log.h"
#include "cmd/cask-cri/format.h"
#include "cmd/cask-cri/json_config.h"
#include "lib/base/fs.h"

namespace cask::cri {

namespace v1 = runtime::v1;
using Seconds = std::chrono::seconds;

v1::ListPodSandboxRequest PodsRequest(const Options& o) {
  v1::ListPodSandboxRequest r;
  auto* f = r.mutable_filter();
  if (!o.pod_id.empty()) f->set_id(o.pod_id);
  if (o.state == "ready") f->mutable_state()->set_state(v1::SANDBOX_READY);
  if (o.state == "notready") f->mutable_state()->set_state(v1::SANDBOX_NOTREADY);
  for (const auto& [k, v] : o.labels) (*f->mutable_label_selector())[k] = v;
  return r;
}

v1::ListContainersRequest ContainersRequest(const Options& o) {
  v1::ListContainersRequest r;
  auto* f = r.mutable_filter();
  if (!o.pod_id.empty()) f->set_pod_sandbox_id(o.pod_id);
  static const std::map<std::string, v1::ContainerState> kStates = {{"created", v1::CONTAINER_CREATED},
                                                                     {"running", v1::CONTAINER_RUNNING},
                                                                     {"exited", v1::CONTAINER_EXITED},
                                                                     {"unknown", v1::CONTAINER_UNKNOWN}};
  if (auto it = kStates.find(o.state); it != kStates.end()) {
    f->mutable_state()->set_state(it->second);
  } else if (!o.all) {
    f->mutable_state()->set_state(v1::CONTAINER_RUNNING);
  }
  for (const auto& [k, v] : o.labels) (*f->mutable_label_selector())[k] = v;
  return r;
}

v1::ListContainerStatsRequest StatsRequest(const Options& o) {
  v1::ListContainerStatsRequest r;
  auto* f = r.mutable_filter();
  if (o.ids.size() == 1) f->set_id(o.ids.front());
  if (!o.pod_id.empty()) f->set_pod_sandbox_id(o.pod_id);
  for (const auto& [k, v] : o.labels) (*f->mutable_label_selector())[k] = v;
  return r;
}

v1::UpdateContainerResourcesRequest UpdateRequest(const Options& o, const std::string& id) {
  v1::UpdateContainerResourcesRequest r;
  r.set_container_id(id);
  auto* l = r.mutable_linux();
  if (o.cpu_period) l->set_cpu_period(*o.cpu_period);
  if (o.cpu_quota) l->set_cpu_quota(*o.cpu_quota);
  if (o.cpu_shares) l->set_cpu_shares(*o.cpu_shares);
  if (o.memory) l->set_memory_limit_in_bytes(*o.memory);
  if (o.cpuset_cpus) l->set_cpuset_cpus(*o.cpuset_cpus);
  if (o.cpuset_mems) l->set_cpuset_mems(*o.cpuset_mems);
  return r;
}

Result<v1::RunPodSandboxRequest> RunPodRequest(const Options& o) {
  v1::RunPodSandboxRequest r;
  CASK_TRY_CTX(MessageFromJsonFile(o.pod_config, r.mutable_config()), "pod config");
  if (!r.config().has_metadata()) {
    return Error::InvalidArgument("pod config " + o.pod_config + ": \"metadata\" (name, namespace, uid) is required");
  }
  r.set_runtime_handler(o.runtime_handler);
  return r;
}

Result<v1::CreateContainerRequest> CreateRequest(const Options& o) {
  v1::CreateContainerRequest r;
  r.set_pod_sandbox_id(o.pod_id);
  CASK_TRY_CTX(MessageFromJsonFile(o.container_config, r.mutable_config()), "container config");
  CASK_TRY_CTX(MessageFromJsonFile(o.pod_config, r.mutable_sandbox_config()), "pod config");
  if (!r.config().has_metadata()) {
    return Error::InvalidArgument("container config " + o.container_config + ": \"metadata\" (name) is required");
  }
  if (r.config().image().image().empty()) {
    return Error::InvalidArgument("container config " + o.container_config + ": \"image\": {\"image\": ...} is required");
  }
  return r;
}

std::string InspectDocument(const google::protobuf::Message& status, const std::string& status_key,
                            const google::protobuf::Map<std::string, std::string>& info) {
  nlohmann::json doc = nlohmann::json::object();
  doc[status_key] = nlohmann::json::parse(MessageToJson(status), nullptr, false);
  nlohmann::json inf = nlohmann::json::object();
  for (const auto& [k, v] : info) {
    auto parsed = nlohmann::json::parse(v, nullptr, false);
    inf[k] = parsed.is_discarded() ? nlohmann::json(v) : parsed;
  }
  doc["info"] = std::move(inf);
  return doc.dump(2) + "\n";
}

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One command's context: the client, the streams, and the report of a
// failed call.
class Runner {
 public:
  Runner(const Options& o, std::FILE* out, std::FILE* err)
      : o_(o), out_(out), err_(err), client_(*NormalizeEndpoint(o.endpoint)), base_(o.timeout_s) {}

  int Fail(const std::string& what, const Error& e) {
    std::fprintf(err_, "cask-cri: %s: %s\n", what.c_str(), FormatRpcError(e).c_str());
    return kExitCallFailed;
  }
  int Usage(const Error& e) {
    std::fprintf(err_, "cask-cri: %s\n", e.ToString().c_str());
    return kExitUsage;
  }
  void Print(const std::string& s) { std::fputs(s.c_str(), out_); }

  // Runs `fn` for every id, reporting each failure; 0 if all succeeded.
  int ForEachId(const std::string& what, const std::function<Status(const std::string&)>& fn) {
    int rc = 0;
    for (const auto& id : o_.ids) {
      if (auto st = fn(id); !st.ok()) {
        rc = Fail(what + " " + id, st.error());
      } else {
        Print(id + "\n");
      }
    }
    return rc;
  }

  int Version() {
    auto r = client_.Version(base_);
    if (!r.ok()) return Fail("version", r.error());
    Print(o_.output == Output::kJson ? MessageToJson(*r) : VersionText(*r));
    return 0;
  }

  int Info() {
    auto r = client_.Status(true, base_);
    if (!r.ok()) return Fail("status", r.error());
    if (o_.output == Output::kJson) {
      Print(InspectDocument(r->status(), "status", r->info()));
      return 0;
    }
    Table t({"CONDITION", "STATUS", "REASON", "MESSAGE"});
    for (const auto& c : r->status().conditions()) {
      t.Add({c.type(), c.status() ? "true" : "false", c.reason(), c.message()});
    }
    Print(t.Render());
    return 0;
  }

  int Runp() {
    auto req = RunPodRequest(o_);
    if (!req.ok()) return Usage(req.error());
    // VM boot happens inside RunPodSandbox: twice the base deadline, as
    // crictl gives it.
    auto r = client_.RunPodSandbox(*req, base_ * 2);
    if (!r.ok()) return Fail("run pod sandbox", r.error());
    Print(r->pod_sandbox_id() + "\n");
    return 0;
  }

  int Inspectp() {
    auto r = client_.PodSandboxStatus(o_.ids.front(), true, base_);
    if (!r.ok()) return Fail("pod sandbox status " + o_.ids.front(), r.error());
    Print(InspectDocument(r->status(), "status", r->info()));
    return 0;
  }

  int Pods() {
    auto r = client_.ListPodSandbox(PodsRequest(o_), base_);
    if (!r.ok()) return Fail("list pod sandboxes", r.error());
    if (!o_.name.empty()) {
      auto* items = r->mutable_items();
      for (int i = items->size() - 1; i >= 0; --i) {
        if (items->Get(i).metadata().name() != o_.name) items->DeleteSubrange(i, 1);
      }
    }
    if (o_.quiet) {
      for (const auto& p : r->items()) Print(p.id() + "\n");
    } else {
      Print(o_.output == Output::kJson ? MessageToJson(*r) : PodsTable(*r, NowNs(), o_.no_trunc));
    }
    return 0;
  }

  int Create() {
    auto req = CreateRequest(o_);
    if (!req.ok()) return Usage(req.error());
    auto r = client_.CreateContainer(*req, base_);
    if (!r.ok()) return Fail("create container", r.error());
    Print(r->container_id() + "\n");
    return 0;
  }

  int Inspect() {
    auto r = client_.ContainerStatus(o_.ids.front(), true, base_);
    if (!r.ok()) return Fail("container status " + o_.ids.front(), r.error());
    Print(InspectDocument(r->status(), "status", r->info()));
    return 0;
  }

  int Ps() {
    auto r = client_.ListContainers(ContainersRequest(o_), base_);
    if (!r.ok()) return Fail("list containers", r.error());
    if (!o_.name.empty()) {
      auto* items = r->mutable_containers();
      for (int i = items->size() - 1; i >= 0; --i) {
        if (items->Get(i).metadata().name() != o_.name) items->DeleteSubrange(i, 1);
      }
    }
    if (o_.quiet) {
      for (const auto& c : r->containers()) Print(c.id() + "\n");
    } else {
      Print(o_.output == Output::kJson ? MessageToJson(*r) : ContainersTable(*r, NowNs(), o_.no_trunc));
    }
    return 0;
  }

  int Exec() {
    v1::ExecSyncRequest req;
    req.set_container_id(o_.ids.front());
    for (const auto& a : o_.cmd) req.add_cmd(a);
    req.set_timeout(o_.exec_timeout_s);
    auto r = client_.ExecSync(req, base_ + Seconds(o_.exec_timeout_s));
    if (!r.ok()) return Fail("exec in " + o_.ids.front(), r.error());
    if (o_.output == Output::kJson) {
      Print(MessageToJson(*r));
    } else {
      std::fwrite(r->stdout().data(), 1, r->stdout().size(), out_);
      std::fwrite(r->stderr().data(), 1, r->stderr().size(), err_);
    }
    return r->exit_code();
  }

  int Stats() {
    v1::ListContainerStatsResponse all;
    if (o_.ids.size() > 1) {
      for (const auto& id : o_.ids) {
        Options one = o_;
        one.ids = {id};
        auto r = client_.ListContainerStats(StatsRequest(one), base_);
        if (!r.ok()) return Fail("container stats " + id, r.error());
        all.MergeFrom(*r);
      }
    } else {
      auto r = client_.ListContainerStats(StatsRequest(o_), base_);
      if (!r.ok()) return Fail("container stats", r.error());
      all = std::move(*r);
    }
    Print(o_.output == Output::kJson ? MessageToJson(all) : StatsTable(all, o_.no_trunc));
    return 0;
  }

  int Logs() {
    const std::string& id = o_.ids.front();
    auto st = client_.ContainerStatus(id, false, base_);
    if (!st.ok()) return Fail("container status " + id, st.error());
    const std::string& path = st->status().log_path();
    if (path.empty()) {
      return Usage(Error::FailedPrecondition("container " + id + " has no log path (its config set no log_path)"));
    }
    auto text = ReadFile(path);
    if (!text.ok()) return Usage(std::move(text).error().Wrap("log of " + id));
    auto lines = ParseCriLog(*text);
    if (!lines.ok()) return Usage(std::move(lines).error().Wrap(path));
    for (const auto& l : Tail(std::move(*lines), o_.tail)) {
      std::FILE* f = l.stream == "stderr" ? err_ : out_;
      std::string s = o_.timestamps ? l.time + " " + l.text + "\n" : l.text + "\n";
      std::fwrite(s.data(), 1, s.size(), f);
    }
    return 0;
  }

  int Images() {
    v1::ListImagesRequest req;
    if (!o_.image.empty()) req.mutable_filter()->mutable_image()->set_image(o_.image);
    auto r = client_.ListImages(req, base_);
    if (!r.ok()) return Fail("list images", r.error());
    if (o_.quiet) {
      for (const auto& i : r->images()) Print(i.id() + "\n");
    } else {
      Print(o_.output == Output::kJson ? MessageToJson(*r) : ImagesTable(*r, o_.no_trunc));
    }
    return 0;
  }

  int Inspecti() {
    auto r = client_.ImageStatus(o_.image, true, base_);
    if (!r.ok()) return Fail("image status " + o_.image, r.error());
    if (!r->has_image()) {
      std::fprintf(err_, "cask-cri: image status %s: no such image\n", o_.image.c_str());
      return kExitCallFailed;
    }
    Print(InspectDocument(r->image(), "status", r->info()));
    return 0;
  }

  int Dispatch() {
    switch (o_.command) {
      case Command::kVersion: return Version();
      case Command::kInfo: return Info();
      case Command::kRunp: return Runp();
      case Command::kStopp:
        return ForEachId("stop pod sandbox", [&](const std::string& id) -> Status {
          auto r = client_.StopPodSandbox(id, base_);
          if (!r.ok()) return std::move(r).error();
          return Ok();
        });
      case Command::kRmp:
        return ForEachId("remove pod sandbox", [&](const std::string& id) -> Status {
          auto r = client_.RemovePodSandbox(id, base_);
          if (!r.ok()) return std::move(r).error();
          return Ok();
        });
      case Command::kInspectp: return Inspectp();
      case Command::kPods: return Pods();
      case Command::kCreate: return Create();
      case Command::kStart:
        return ForEachId("start container", [&](const std::string& id) -> Status {
          auto r = client_.StartContainer(id, base_);
          if (!r.ok()) return std::move(r).error();
          return Ok();
        });
      case Command::kStop:
        return ForEachId("stop container", [&](const std::string& id) -> Status {
          auto r = client_.StopContainer(id, o_.stop_timeout_s, base_ + Seconds(o_.stop_timeout_s));
          if (!r.ok()) return std::move(r).error();
          return Ok();
        });
      case Command::kRm:
        return ForEachId("remove container", [&](const std::string& id) -> Status {
          auto r = client_.RemoveContainer(id, base_);
          if (!r.ok()) return std::move(r).error();
          return Ok();
        });
      case Command::kInspect: return Inspect();
      case Command::kPs: return Ps();
      case Command::kExec: return Exec();
      case Command::kStats: return Stats();
      case Command::kUpdate:
        return ForEachId("update container resources", [&](const std::string& id) -> Status {
          auto r = client_.UpdateContainerResources(UpdateRequest(o_, id), base_);
          if (!r.ok()) return std::move(r).error();
          return Ok();
        });
      case Command::kLogs: return Logs();
      case Command::kImages: return Images();
      case Command::kInspecti: return Inspecti();
      case Command::kNone: break;
    }
    return Usage(Error::InvalidArgument("no command given"));
  }

 private:
  const Options& o_;
  std::FILE* out_;
  std::FILE* err_;
  CriClient client_;
  Seconds base_;
};

}  // namespace

int Run(const Options& o, std::FILE* out, std::FILE* err) {
  if (auto target = NormalizeEndpoint(o.endpoint); !target.ok()) {
    std::fprintf(err, "cask-cri: %s\n", target.error().ToString().c_str());
    return kExitUsage;
  }
  Runner runner(o, out, err);
  return runner.Dispatch();
}

}  // namespace cask::cri
