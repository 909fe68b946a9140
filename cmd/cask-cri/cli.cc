#include "cmd/cask-cri/cli.h"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>

namespace cask::cri {

namespace {

struct SubcommandName {
  const char* name;
  Command command;
};

constexpr SubcommandName kCommands[] = {
    {"version", Command::kVersion}, {"info", Command::kInfo},         {"runp", Command::kRunp},
    {"stopp", Command::kStopp},     {"rmp", Command::kRmp},           {"inspectp", Command::kInspectp},
    {"pods", Command::kPods},       {"create", Command::kCreate},     {"start", Command::kStart},
    {"stop", Command::kStop},       {"rm", Command::kRm},             {"inspect", Command::kInspect},
    {"ps", Command::kPs},           {"exec", Command::kExec},         {"stats", Command::kStats},
    {"update", Command::kUpdate},   {"logs", Command::kLogs},         {"images", Command::kImages},
    {"inspecti", Command::kInspecti},
};

// Raw strings of the options whose parsing CLI11 cannot express; Finish()
// reads them back through the App.
constexpr const char* kLabelOpt = "--label";
constexpr const char* kMemoryOpt = "--memory";

void Filters(CLI::App* sub, Options& o, bool with_state, bool with_pod) {
  sub->add_option("--name", o.name, "Only those with this metadata name");
  if (with_state) sub->add_option("--state", o.state, "Only those in this state");
  if (with_pod) sub->add_option("-p,--pod", o.pod_id, "Only those of this pod (id or unique prefix)");
  sub->add_option(kLabelOpt, o.label_args, "Only those with this label (KEY=VALUE; repeatable)")
      ->type_name("KEY=VALUE");
  sub->add_flag("-q,--quiet", o.quiet, "Print ids only");
  sub->add_flag("--no-trunc", o.no_trunc, "Do not shorten ids");
}

}  // namespace

void BuildCli(CLI::App& app, Options& o) {
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  app.add_option("-r,--runtime-endpoint", o.endpoint,
                 std::string("containerd's socket (default: $") + kEndpointEnv + ", else " + kDefaultEndpoint +
                     ")");
  app.add_option("-t,--timeout", o.timeout_s,
                 "Deadline of each call in seconds (runp gets twice this, stop and exec add theirs)")
      ->check(CLI::PositiveNumber);
  app.add_option("-o,--output", o.output, "Output format: table (default) or json")
      ->transform(CLI::CheckedTransformer(std::map<std::string, Output>{{"table", Output::kTable},
                                                                        {"json", Output::kJson}},
                                          CLI::ignore_case)
                      .description(""))
      ->type_name("table|json");

  app.add_subcommand("version", "Runtime name and version (CRI Version)");
  app.add_subcommand("info", "Runtime and network readiness, and containerd's CRI configuration (CRI Status)");

  auto* runp = app.add_subcommand("runp", "Run a pod sandbox from a pod config JSON file");
  runp->add_option("pod-config", o.pod_config, "Pod config (PodSandboxConfig as JSON)")->required();
  runp->add_option("--runtime", o.runtime_handler, "Runtime handler (containerd runtimes key, e.g. cask)");

  auto* stopp = app.add_subcommand("stopp", "Stop pod sandboxes (kills their containers)");
  stopp->add_option("pod-id", o.ids, "Pod ids (or unique prefixes)")->required();
  auto* rmp = app.add_subcommand("rmp", "Remove pod sandboxes");
  rmp->add_option("pod-id", o.ids, "Pod ids (or unique prefixes)")->required();
  auto* inspectp = app.add_subcommand("inspectp", "Status of a pod sandbox, as JSON");
  inspectp->add_option("pod-id", o.ids, "Pod ids (or unique prefixes)")->required();

  auto* pods = app.add_subcommand("pods", "List pod sandboxes");
  Filters(pods, o, true, false);
  pods->add_option("--id", o.pod_id, "Only this pod (full id)");

  auto* create = app.add_subcommand("create", "Create a container in a pod");
  create->add_option("pod-id", o.pod_id, "Pod id")->required();
  create->add_option("container-config", o.container_config, "Container config (ContainerConfig as JSON)")
      ->required();
  create->add_option("pod-config", o.pod_config, "The pod's config (as given to runp)")->required();

  auto* start = app.add_subcommand("start", "Start created containers");
  start->add_option("container-id", o.ids, "Container ids")->required();
  auto* stop = app.add_subcommand("stop", "Stop running containers");
  stop->add_option("container-id", o.ids, "Container ids")->required();
  stop->add_option("-t,--timeout", o.stop_timeout_s, "Seconds between the stop signal and SIGKILL")
      ->check(CLI::NonNegativeNumber);
  auto* rm = app.add_subcommand("rm", "Remove containers");
  rm->add_option("container-id", o.ids, "Container ids")->required();
  auto* inspect = app.add_subcommand("inspect", "Status of a container, as JSON");
  inspect->add_option("container-id", o.ids, "Container ids")->required();

  auto* ps = app.add_subcommand("ps", "List containers (running ones unless -a)");
  Filters(ps, o, true, true);
  ps->add_flag("-a,--all", o.all, "Every state");

  auto* exec = app.add_subcommand("exec", "Run a command in a running container and wait (CRI ExecSync)");
  exec->add_option("--timeout", o.exec_timeout_s, "Kill the command after this many seconds (0: never)")
      ->check(CLI::NonNegativeNumber);
  // "exec ID CMD [ARGS...]": everything after the id belongs to the command,
  // options included.
  exec->add_option("container-id", o.one_id, "Container id")->required();
  exec->add_option("command", o.cmd, "Command and its arguments")->required();
  exec->positionals_at_end();

  auto* stats = app.add_subcommand("stats", "CPU and memory of containers");
  stats->add_option("container-id", o.ids, "Container ids (default: all)");
  stats->add_option("-p,--pod", o.pod_id, "Only the containers of this pod");
  stats->add_option(kLabelOpt, o.label_args, "Only those with this label (KEY=VALUE; repeatable)")
      ->type_name("KEY=VALUE");
  stats->add_flag("--no-trunc", o.no_trunc, "Do not shorten ids");

  auto* update = app.add_subcommand("update", "Change the resources of running containers");
  update->add_option("container-id", o.ids, "Container ids")->required();
  update->add_option("--cpu-period", o.cpu_period, "CFS period in microseconds");
  update->add_option("--cpu-quota", o.cpu_quota, "CFS quota in microseconds");
  update->add_option("--cpu-share,--cpu-shares", o.cpu_shares, "CPU shares (relative weight)");
  update->add_option("--cpuset-cpus", o.cpuset_cpus, "CPUs allowed (e.g. 0-1)");
  update->add_option("--cpuset-mems", o.cpuset_mems, "Memory nodes allowed");
  update->add_option(kMemoryOpt, o.memory_arg, "Memory limit (bytes, or with k/m/g/t or Ki/Mi/Gi/Ti)")->type_name("SIZE");

  auto* logs = app.add_subcommand("logs", "Print a container's log (the CRI log file)");
  logs->add_option("container-id", o.ids, "Container id")->required()->expected(1);
  logs->add_option("--tail", o.tail, "Only the last N lines (-1: all)");
  logs->add_flag("--timestamps", o.timestamps, "Prefix each line with its time");

  auto* images = app.add_subcommand("images", "List images (in containerd's k8s.io namespace)");
  images->add_option("image", o.image, "Only this image (name or id)");
  images->add_flag("-q,--quiet", o.quiet, "Print ids only");
  images->add_flag("--no-trunc", o.no_trunc, "Do not shorten ids");
  auto* inspecti = app.add_subcommand("inspecti", "Status of an image, as JSON");
  inspecti->add_option("image", o.image, "Image name or id")->required();
}

Status Finish(CLI::App& app, Options& o, const char* env_endpoint) {
  CLI::App* sub = nullptr;
  for (const auto& s : kCommands) {
    if (app.got_subcommand(s.name)) {
      o.command = s.command;
      sub = app.get_subcommand(s.name);
    }
  }
  if (sub == nullptr) return Error::InvalidArgument("no command given");

  if (o.endpoint.empty()) o.endpoint = (env_endpoint && *env_endpoint) ? env_endpoint : kDefaultEndpoint;

  for (const auto& s : o.label_args) {
    CASK_ASSIGN_OR_RETURN(auto kv, ParseLabel(s));
    o.labels[kv.first] = kv.second;
  }
  if (auto* opt = sub->get_option_no_throw(kMemoryOpt); opt != nullptr && opt->count() > 0) {
    auto bytes = ParseBytes(o.memory_arg);
    if (!bytes.ok()) return std::move(bytes).error().Wrap("--memory");
    o.memory = *bytes;
  }
  if (o.command == Command::kExec) o.ids = {o.one_id};
  if (o.command == Command::kExec && !o.cmd.empty() && o.cmd.front() == "--") o.cmd.erase(o.cmd.begin());
  if (o.command == Command::kExec && o.cmd.empty()) {
    return Error::InvalidArgument("exec: a command is required after the container id");
  }
  if (o.command == Command::kUpdate && !o.cpu_period && !o.cpu_quota && !o.cpu_shares && !o.memory &&
      !o.cpuset_cpus && !o.cpuset_mems) {
    return Error::InvalidArgument("update: nothing to change (give --cpu-period, --cpu-quota, --cpu-shares, "
                                  "--cpuset-cpus, --cpuset-mems or --memory)");
  }
  if ((o.command == Command::kInspectp || o.command == Command::kInspect) && o.ids.size() != 1) {
    return Error::InvalidArgument("inspect: exactly one id");
  }
  if (!o.state.empty()) {
    std::string s;
    for (char c : o.state) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool pod_state = s == "ready" || s == "notready";
    bool ctr_state = s == "created" || s == "running" || s == "exited" || s == "unknown";
    if ((o.command == Command::kPods && !pod_state) || (o.command == Command::kPs && !ctr_state)) {
      return Error::InvalidArgument("--state " + o.state + ": expected " +
                                    (o.command == Command::kPods ? "ready or notready"
                                                                 : "created, running, exited or unknown"));
    }
    o.state = s;
  }
  auto target = NormalizeEndpoint(o.endpoint);
  if (!target.ok()) return std::move(target).error();
  return Ok();
}

Result<std::string> NormalizeEndpoint(const std::string& endpoint) {
  std::string path;
  if (endpoint.rfind("unix://", 0) == 0) {
    path = endpoint.substr(7);
  } else if (endpoint.rfind("unix:", 0) == 0) {
    path = endpoint.substr(5);
  } else if (!endpoint.empty() && endpoint[0] == '/') {
    path = endpoint;
  } else {
    return Error::InvalidArgument("runtime endpoint \"" + endpoint +
                                  "\": expected a unix socket (unix:///path or /path)");
  }
  if (path.empty() || path[0] != '/') {
    return Error::InvalidArgument("runtime endpoint \"" + endpoint + "\": the socket path must be absolute");
  }
  return "unix://" + path;
}

Result<int64_t> ParseBytes(const std::string& s) {
  auto bad = [&](const std::string& why) { return Error::InvalidArgument("size \"" + s + "\": " + why); };
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) return bad("expected a number of bytes, optionally with a unit (k, m, g, t, Ki, Mi, Gi, Ti)");
  errno = 0;
  unsigned long long n = std::strtoull(s.substr(0, i).c_str(), nullptr, 10);
  if (errno == ERANGE) return bad("too large");
  std::string unit;
  for (char c : s.substr(i)) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit.size() == 2 && unit[1] == 'i') unit.pop_back();
  if (unit.size() == 2 && unit[1] == 'b') unit.pop_back();
  unsigned shift;
  if (unit.empty() || unit == "b") {
    shift = 0;
  } else if (unit == "k") {
    shift = 10;
  } else if (unit == "m") {
    shift = 20;
  } else if (unit == "g") {
    shift = 30;
  } else if (unit == "t") {
    shift = 40;
  } else {
    return bad("unknown unit \"" + s.substr(i) + "\"");
  }
  if (n > (static_cast<unsigned long long>(LLONG_MAX) >> shift)) return bad("too large");
  return static_cast<int64_t>(n << shift);
}

Result<std::pair<std::string, std::string>> ParseLabel(const std::string& s) {
  auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0) {
    return Error::InvalidArgument("label \"" + s + "\": expected KEY=VALUE");
  }
  return std::pair{s.substr(0, eq), s.substr(eq + 1)};
}

}  // namespace cask::cri
