// Human-readable output of cask-cri: tables, ages, sizes, CRI enum names,
// and the one-line form of a failed call. Pure functions of their inputs
// (the current time is a parameter), so the formatting is unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/error.h"
#include "proto/cri/api.pb.h"

namespace cask::cri {

// A table with a header row; columns are padded to their widest cell and
// separated by three spaces, as crictl prints them. No trailing spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "5 seconds ago", "3 minutes ago", "2 hours ago", "4 days ago"; "just now"
// under a second; "-" for 0 (unset). Both in ns since the epoch.
std::string Age(int64_t then_ns, int64_t now_ns);
// 1536 -> "1.5KiB", 0 -> "0B"; binary units up to TiB, one decimal below 10.
std::string HumanBytes(uint64_t bytes);
// The first 13 characters of an id (crictl's short form) unless `full`.
std::string ShortId(std::string_view id, bool full);

// "SANDBOX_READY" -> "Ready", "SANDBOX_NOTREADY" -> "NotReady";
// "CONTAINER_RUNNING" -> "Running", ... (crictl's words).
std::string PodStateName(runtime::v1::PodSandboxState s);
std::string ContainerStateName(runtime::v1::ContainerState s);

// "code UNKNOWN (2): message", the form every failed call is reported in
// after "cask-cri: <what>: ".
std::string FormatRpcError(const Error& e);

// The tables of `pods`, `ps`, `images` and `stats`.
std::string PodsTable(const runtime::v1::ListPodSandboxResponse& r, int64_t now_ns, bool full_ids);
std::string ContainersTable(const runtime::v1::ListContainersResponse& r, int64_t now_ns, bool full_ids);
std::string ImagesTable(const runtime::v1::ListImagesResponse& r, bool full_ids);
std::string StatsTable(const runtime::v1::ListContainerStatsResponse& r, bool full_ids);
// `version`: "Version:  0.1.0\nRuntimeName:  containerd\n..."
std::string VersionText(const runtime::v1::VersionResponse& r);

// Splits "docker.io/library/busybox:latest" into repository and tag
// ("<none>" when absent; a digest reference keeps its tag "<none>").
std::pair<std::string, std::string> RepoTag(std::string_view ref);

}  // namespace cask::cri
