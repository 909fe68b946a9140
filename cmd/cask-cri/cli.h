// cask-cri's command line: the options of every subcommand, parsed into one
// value (Options) that commands.h executes. Kept apart from main so that
// argument handling is unit-tested without a containerd.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/base/result.h"

namespace cask::cri {

// containerd's socket, where its CRI plugin is served.
inline constexpr const char* kDefaultEndpoint = "unix:///run/containerd/containerd.sock";
// The environment variable crictl also reads for the endpoint.
inline constexpr const char* kEndpointEnv = "CONTAINER_RUNTIME_ENDPOINT";

enum class Command {
  kNone,
  kVersion,
  kInfo,
  kRunp,
  kStopp,
  kRmp,
  kInspectp,
  kPods,
  kCreate,
  kStart,
  kStop,
  kRm,
  kInspect,
  kPs,
  kExec,
  kStats,
  kUpdate,
  kLogs,
  kImages,
  kInspecti,
};

enum class Output { kTable, kJson };

struct Options {
  Command command = Command::kNone;
  std::string endpoint;       // as given (see NormalizeEndpoint)
  int64_t timeout_s = 120;    // per-call deadline base (crictl's --timeout)
  Output output = Output::kTable;

  std::string one_id;            // exec: the container (copied into ids)
  std::vector<std::string> ids;  // stopp/rmp/inspectp/start/stop/rm/inspect/stats/update/logs
  // runp / create
  std::string pod_config;        // pod config JSON file
  std::string container_config;  // container config JSON file
  std::string runtime_handler;   // runp --runtime
  std::string pod_id;            // create POD; ps/pods/stats --pod
  // pods / ps / images filters and display
  std::string name;              // --name: exact metadata name
  std::string state;             // --state: ready/notready, created/running/exited/unknown
  std::vector<std::string> label_args;        // --label as given
  std::map<std::string, std::string> labels;  // parsed by Finish (ANDed)
  bool all = false;              // ps -a: every state (default: running only)
  bool quiet = false;            // ids only
  bool no_trunc = false;         // full ids
  // stop
  int64_t stop_timeout_s = 0;    // grace seconds (0: SIGKILL at once)
  // exec
  int64_t exec_timeout_s = 0;    // 0: none
  std::vector<std::string> cmd;
  // update (unset = unchanged)
  std::optional<int64_t> cpu_period, cpu_quota, cpu_shares, memory;  // memory: parsed by Finish
  std::string memory_arg;
  std::optional<std::string> cpuset_cpus, cpuset_mems;
  // logs
  int64_t tail = -1;             // -1: all
  bool timestamps = false;
  // inspecti
  std::string image;
};

// Registers every subcommand and option on `app`, writing into `o`. After
// app.parse(), call Finish(o) to resolve what the parser cannot express.
void BuildCli(CLI::App& app, Options& o);
// The subcommand that was parsed, the endpoint default (CONTAINER_RUNTIME_
// ENDPOINT from `env`, else kDefaultEndpoint), label and size parsing.
// INVALID_ARGUMENT says which option was wrong.
Status Finish(CLI::App& app, Options& o, const char* env_endpoint);

// "unix:///run/x.sock", "unix:/run/x.sock" and "/run/x.sock" all become
// the gRPC target "unix:///run/x.sock"; anything else (tcp, dns) is
// refused: containerd serves CRI on a unix socket.
Result<std::string> NormalizeEndpoint(const std::string& endpoint);
// "64m", "64Mi", "1g", "1048576", "512k" -> bytes (k/m/g/t and their
// Ki/Mi/Gi/Ti forms are both powers of 1024, as crictl and docker read
// them). Refuses negatives, overflow and unknown suffixes.
Result<int64_t> ParseBytes(const std::string& s);
// "k=v" -> {k, v}; the key must be non-empty.
Result<std::pair<std::string, std::string>> ParseLabel(const std::string& s);

}  // namespace cask::cri
