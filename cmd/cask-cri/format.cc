#include "cmd/cask-cri/format.h"

#include <algorithm>
#include <cstdio>

namespace cask::cri {

namespace v1 = runtime::v1;

std::string Table::Render() const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string Age(int64_t then_ns, int64_t now_ns) {
  if (then_ns == 0) return "-";
  int64_t s = (now_ns - then_ns) / 1000000000;
  if (s < 1) return "just now";
  auto unit = [](int64_t n, const char* word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s") + " ago";
  };
  if (s < 60) return unit(s, "second");
  if (s < 3600) return unit(s / 60, "minute");
  if (s < 86400) return unit(s / 3600, "hour");
  return unit(s / 86400, "day");
}

std::string HumanBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + "B";
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v < 10) {
    std::snprintf(buf, sizeof buf, "%.1f%s", v, kUnits[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f%s", v, kUnits[u]);
  }
  return buf;
}

std::string ShortId(std::string_view id, bool full) {
  return std::string(full ? id : id.substr(0, 13));
}

std::string PodStateName(v1::PodSandboxState s) {
  switch (s) {
    case v1::SANDBOX_READY: return "Ready";
    case v1::SANDBOX_NOTREADY: return "NotReady";
    default: return "Unknown(" + std::to_string(static_cast<int>(s)) + ")";
  }
}

std::string ContainerStateName(v1::ContainerState s) {
  switch (s) {
    case v1::CONTAINER_CREATED: return "Created";
    case v1::CONTAINER_RUNNING: return "Running";
    case v1::CONTAINER_EXITED: return "Exited";
    case v1::CONTAINER_UNKNOWN: return "Unknown";
    default: return "Unknown(" + std::to_string(static_cast<int>(s)) + ")";
  }
}

std::string FormatRpcError(const Error& e) {
  return "code " + std::string(CodeName(e.code())) + " (" + std::to_string(static_cast<int>(e.code())) +
         "): " + e.ToString();
}

std::pair<std::string, std::string> RepoTag(std::string_view ref) {
  if (auto at = ref.find('@'); at != std::string_view::npos) {
    return {std::string(ref.substr(0, at)), "<none>"};
  }
  // A ':' after the last '/' is a tag; one before it is a registry port.
  auto slash = ref.rfind('/');
  auto colon = ref.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    return {std::string(ref.substr(0, colon)), std::string(ref.substr(colon + 1))};
  }
  return {std::string(ref), "<none>"};
}

std::string PodsTable(const v1::ListPodSandboxResponse& r, int64_t now_ns, bool full) {
  Table t({"POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"});
  for (const auto& p : r.items()) {
    t.Add({ShortId(p.id(), full), Age(p.created_at(), now_ns), PodStateName(p.state()), p.metadata().name(),
           p.metadata().namespace_(), std::to_string(p.metadata().attempt()),
           p.runtime_handler().empty() ? "(default)" : p.runtime_handler()});
  }
  return t.Render();
}

std::string ContainersTable(const v1::ListContainersResponse& r, int64_t now_ns, bool full) {
  Table t({"CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID"});
  for (const auto& c : r.containers()) {
    std::string image = c.image().image();
    if (!full && image.rfind("sha256:", 0) == 0) image = image.substr(7, 13);
    t.Add({ShortId(c.id(), full), image, Age(c.created_at(), now_ns), ContainerStateName(c.state()),
           c.metadata().name(), std::to_string(c.metadata().attempt()), ShortId(c.pod_sandbox_id(), full)});
  }
  return t.Render();
}

std::string ImagesTable(const v1::ListImagesResponse& r, bool full) {
  Table t({"IMAGE", "TAG", "IMAGE ID", "SIZE"});
  for (const auto& img : r.images()) {
    std::string id = img.id();
    if (!full && id.rfind("sha256:", 0) == 0) id = id.substr(7, 13);
    std::string size = HumanBytes(img.size());
    if (img.repo_tags().empty()) {
      std::string repo = "<none>";
      if (!img.repo_digests().empty()) repo = RepoTag(img.repo_digests(0)).first;
      t.Add({repo, "<none>", id, size});
    }
    for (const auto& tag : img.repo_tags()) {
      auto [repo, tg] = RepoTag(tag);
      t.Add({repo, tg, id, size});
    }
  }
  return t.Render();
}

std::string StatsTable(const v1::ListContainerStatsResponse& r, bool full) {
  Table t({"CONTAINER", "NAME", "CPU %", "CPU TIME", "MEM", "DISK", "INODES"});
  for (const auto& s : r.stats()) {
    std::string cpu_pct = "-", cpu_time = "-", mem = "-", disk = "-", inodes = "-";
    if (s.has_cpu()) {
      if (s.cpu().has_usage_nano_cores()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(s.cpu().usage_nano_cores().value()) / 1e7);
        cpu_pct = buf;
      }
      if (s.cpu().has_usage_core_nano_seconds()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3fs",
                      static_cast<double>(s.cpu().usage_core_nano_seconds().value()) / 1e9);
        cpu_time = buf;
      }
    }
    if (s.has_memory() && s.memory().has_working_set_bytes()) mem = HumanBytes(s.memory().working_set_bytes().value());
    if (s.has_writable_layer()) {
      if (s.writable_layer().has_used_bytes()) disk = HumanBytes(s.writable_layer().used_bytes().value());
      if (s.writable_layer().has_inodes_used()) inodes = std::to_string(s.writable_layer().inodes_used().value());
    }
    t.Add({ShortId(s.attributes().id(), full), s.attributes().metadata().name(), cpu_pct, cpu_time, mem, disk,
           inodes});
  }
  return t.Render();
}

std::string VersionText(const v1::VersionResponse& r) {
  return "Version:  " + r.version() + "\nRuntimeName:  " + r.runtime_name() + "\nRuntimeVersion:  " +
         r.runtime_version() + "\nRuntimeApiVersion:  " + r.runtime_api_version() + "\n";
}

}  // namespace cask::cri
