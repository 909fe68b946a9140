#include "lib/shim/grouping.h"

#include <nlohmann/json.hpp>

namespace cask::shim {
namespace {

struct KeySet {
  std::string_view type_key;
  std::string_view sandbox_value;
  std::string_view container_value;
  std::string_view sandbox_id_key;
};

constexpr KeySet kKeySets[] = {
    {"io.kubernetes.cri.container-type", "sandbox", "container", "io.kubernetes.cri.sandbox-id"},
    {"io.kubernetes.cri-o.ContainerType", "sandbox", "container", "io.kubernetes.cri-o.SandboxID"},
    {"io.kubernetes.docker.type", "podsandbox", "container", "io.kubernetes.sandbox.id"},
};

}  // namespace

std::string_view KindName(ContainerKind k) {
  switch (k) {
    case ContainerKind::kSandbox: return "sandbox";
    case ContainerKind::kPodContainer: return "container";
    case ContainerKind::kStandalone: return "standalone";
  }
  return "?";
}

Result<Grouping> DecideGrouping(const std::map<std::string, std::string>& annotations, std::string_view id) {
  for (const auto& ks : kKeySets) {
    auto it = annotations.find(std::string(ks.type_key));
    if (it == annotations.end()) continue;
    const std::string& type = it->second;
    if (type == ks.sandbox_value) return Grouping{ContainerKind::kSandbox, std::string(id)};
    if (type == ks.container_value) {
      auto sid = annotations.find(std::string(ks.sandbox_id_key));
      if (sid == annotations.end() || sid->second.empty())
        return Error::InvalidArgument("annotation " + std::string(ks.type_key) +
                                      "=container needs a non-empty " + std::string(ks.sandbox_id_key));
      if (sid->second == id)
        return Error::InvalidArgument("annotation " + std::string(ks.sandbox_id_key) + " names the container itself (" +
                                      std::string(id) + ") but " + std::string(ks.type_key) + " is container");
      return Grouping{ContainerKind::kPodContainer, sid->second};
    }
    return Error::InvalidArgument("annotation " + std::string(ks.type_key) + " has unknown value \"" + type +
                                  "\" (want " + std::string(ks.sandbox_value) + " or " +
                                  std::string(ks.container_value) + ")");
  }
  return Grouping{ContainerKind::kStandalone, std::string(id)};
}

Result<std::map<std::string, std::string>> ReadAnnotations(std::string_view config_json) {
  auto j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::InvalidArgument("config.json is not valid JSON");
  if (!j.is_object()) return Error::InvalidArgument("config.json: not a JSON object");
  std::map<std::string, std::string> out;
  auto it = j.find("annotations");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_object()) return Error::InvalidArgument("config.json: annotations: must be an object");
  for (auto& [k, v] : it->items()) {
    if (!v.is_string()) return Error::InvalidArgument("config.json: annotations." + k + ": must be a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

}  // namespace cask::shim
