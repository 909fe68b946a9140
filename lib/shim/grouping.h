// Pod grouping: which shim (and so which VM) a container belongs to
// (one shim per pod). containerd runs `start` once per task; the
// sandbox container of a pod and every container with no pod annotations
// get a new shim, a pod's other containers get the sandbox's shim.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "lib/base/result.h"

namespace cask::shim {

enum class ContainerKind {
  kSandbox,       // the pod's sandbox (pause) container: boots the pod VM
  kPodContainer,  // a container of an existing pod: joins the sandbox's VM
  kStandalone,    // no pod annotations: a VM of its own
};

std::string_view KindName(ContainerKind k);

struct Grouping {
  ContainerKind kind = ContainerKind::kStandalone;
  // The id the shim socket is named after: the sandbox id for a pod
  // container, the container's own id otherwise.
  std::string group_id;
};

// Decides from the OCI annotations, checking containerd CRI's keys
// (io.kubernetes.cri.container-type / sandbox-id), then CRI-O's
// (io.kubernetes.cri-o.ContainerType / SandboxID), then dockershim's
// (io.kubernetes.docker.type / io.kubernetes.sandbox.id); the first
// container-type key present wins. An unknown type value, or a pod container
// without a sandbox id, is INVALID_ARGUMENT naming the annotation.
Result<Grouping> DecideGrouping(const std::map<std::string, std::string>& annotations, std::string_view id);

// The "annotations" object of a config.json (and nothing else of it: start
// must not fail on a spec problem that Create reports better).
Result<std::map<std::string, std::string>> ReadAnnotations(std::string_view config_json);

}  // namespace cask::shim
