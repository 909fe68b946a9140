// cask-cri's subcommands: Options (cli.h) in, CRI calls through CriClient,
// tables or JSON out. The request builders and the inspect document are
// pure functions, unit-tested; Run() is the one entry point main calls.
#pragma once

#include <cstdio>
#include <map>
#include <string>

#include "cmd/cask-cri/cli.h"
#include "lib/base/result.h"
#include "proto/cri/api.pb.h"

namespace cask::cri {

// Exit statuses: a failed call (the server's code and message are printed)
// and a failure before any call (bad file, bad option).
inline constexpr int kExitCallFailed = 1;
inline constexpr int kExitUsage = 2;

// Requests built from the options.
runtime::v1::ListPodSandboxRequest PodsRequest(const Options& o);
runtime::v1::ListContainersRequest ContainersRequest(const Options& o);
runtime::v1::ListContainerStatsRequest StatsRequest(const Options& o);
runtime::v1::UpdateContainerResourcesRequest UpdateRequest(const Options& o, const std::string& id);
// runp/create: reads the JSON files named in `o`.
Result<runtime::v1::RunPodSandboxRequest> RunPodRequest(const Options& o);
Result<runtime::v1::CreateContainerRequest> CreateRequest(const Options& o);

// The JSON document `inspect`/`inspectp`/`inspecti` print:
// {"status": <status as protobuf JSON>, "info": {key: value}} where each
// info value that is itself JSON (containerd's verbose "info") is embedded
// as JSON, anything else as a string.
std::string InspectDocument(const google::protobuf::Message& status, const std::string& status_key,
                            const google::protobuf::Map<std::string, std::string>& info);

// Runs the parsed command against the endpoint, printing to `out`/`err`.
// Returns the process exit status (exec: the command's own).
int Run(const Options& o, std::FILE* out, std::FILE* err);

}  // namespace cask::cri
