#include "lib/sandbox/pod_netns.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace cask::sandbox {

Result<std::string> PodNetnsPath(const oci::Spec& spec, const std::string& host_netns) {
  auto refuse = [](const std::string& what) {
    return Error::FailedPrecondition("a cask pod runs in its own VM and cannot share the host's " + what +
                                     " namespace; remove " +
                                     (what == "network" ? std::string("hostNetwork")
                                                        : what == "PID" ? std::string("hostPID") : std::string("hostIPC")) +
                                     " from the pod or run it with another runtime");
  };
  const oci::Namespace* net = nullptr;
  const oci::Namespace* pid = nullptr;
  const oci::Namespace* ipc = nullptr;
  if (spec.linux) {
    for (const auto& ns : spec.linux->namespaces) {
      if (ns.type == "network") net = &ns;
      else if (ns.type == "pid") pid = &ns;
      else if (ns.type == "ipc") ipc = &ns;
    }
  }
  if (!net) return refuse("network");
  if (!pid || !pid->path.empty()) return refuse("PID");
  if (!ipc || !ipc->path.empty()) return refuse("IPC");
  if (net->path.empty()) return std::string();
  struct stat a, b;
  if (::stat(net->path.c_str(), &a) == 0 && ::stat(host_netns.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
      a.st_ino == b.st_ino)
    return refuse("network");
  return net->path;
}

Status RefuseHostNamespacesInJson(std::string_view config_json) {
  auto j = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Ok();
  auto ann = j.find("annotations");
  if (ann != j.end() && ann->is_object()) {
    for (const char* key : {"io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"}) {
      auto t = ann->find(key);
      if (t != ann->end() && t->is_string() && t->get<std::string>() == "container") return Ok();
    }
  }
  // Only a well-formed namespace list speaks for the pod; anything less
  // (no linux section, a malformed list) keeps the parser's own error.
  auto linux = j.find("linux");
  if (linux == j.end() || !linux->is_object()) return Ok();
  auto nss = linux->find("namespaces");
  if (nss == linux->end() || !nss->is_array()) return Ok();
  oci::Spec spec;
  spec.linux = oci::Linux{};
  for (const auto& ns : *nss) {
    if (!ns.is_object()) return Ok();
    auto t = ns.find("type");
    if (t == ns.end() || !t->is_string()) return Ok();
    oci::Namespace n;
    n.type = t->get<std::string>();
    if (auto p = ns.find("path"); p != ns.end() && p->is_string()) n.path = p->get<std::string>();
    spec.linux->namespaces.push_back(std::move(n));
  }
  auto r = PodNetnsPath(spec);
  if (!r.ok()) return std::move(r).error();
  return Ok();
}

}  // namespace cask::sandbox
