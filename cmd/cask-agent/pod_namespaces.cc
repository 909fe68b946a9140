#include "cmd/cask-agent/pod_namespaces.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "lib/base/fs.h"

namespace cask::agent {
namespace {

struct KeySet {
  std::string_view type_key;
  std::string_view sandbox_id_key;
};

constexpr KeySet kKeySets[] = {
    {"io.kubernetes.cri.container-type", "io.kubernetes.cri.sandbox-id"},
    {"io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri-o.SandboxID"},
};

// Guest strings end up in errors sent to the host: keep them short.
std::string Short(std::string_view s) {
  constexpr size_t kMax = 256;
  return s.size() <= kMax ? std::string(s) : std::string(s.substr(0, kMax)) + "...";
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

Result<PodMembership> PodMembershipOf(const std::map<std::string, std::string>& annotations,
                                      std::string_view id) {
  for (const auto& ks : kKeySets) {
    auto it = annotations.find(std::string(ks.type_key));
    if (it == annotations.end()) continue;
    if (it->second == "sandbox") return PodMembership{PodRole::kSandbox, ""};
    if (it->second != "container") {
      return Error::InvalidArgument("annotation " + std::string(ks.type_key) + " has unknown value \"" +
                                    Short(it->second) + "\"");
    }
    auto sid = annotations.find(std::string(ks.sandbox_id_key));
    if (sid == annotations.end() || sid->second.empty()) {
      return Error::InvalidArgument("annotation " + std::string(ks.type_key) + "=container needs " +
                                    std::string(ks.sandbox_id_key));
    }
    if (sid->second == id) {
      return Error::InvalidArgument("annotation " + std::string(ks.sandbox_id_key) + " names the container itself");
    }
    return PodMembership{PodRole::kPodContainer, sid->second};
  }
  return PodMembership{};
}

bool IsHostNamespacePath(std::string_view path) {
  if (path.empty() || path.front() != '/' || path.size() > 4096) return false;
  std::vector<std::string_view> parts;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view c = path.substr(start, slash - start);
    if (c.empty() || c == "." || c == "..") return false;
    parts.push_back(c);
    start = slash + 1;
  }
  if (parts.size() == 4 && parts[0] == "proc" && AllDigits(parts[1]) && parts[2] == "ns") return true;
  return parts.size() >= 2 && parts[parts.size() - 2] == "netns";
}

Result<container::NamespaceResolver> PodNamespaces::ResolverFor(const std::string& id, const oci::Spec& spec) {
  CASK_ASSIGN_OR_RETURN(PodMembership m, PodMembershipOf(spec.annotations, id));
  return container::NamespaceResolver(
      [this, m, id](const oci::Namespace& ns) -> Result<container::NamespaceTarget> {
        if (!IsHostNamespacePath(ns.path)) {
          return Error::InvalidArgument("\"" + Short(ns.path) +
                                        "\" is not a namespace path the host sends (<dir>/netns/<name> or "
                                        "/proc/<pid>/ns/<type>); it is not opened in the guest");
        }
        switch (m.role) {
          case PodRole::kStandalone:
            return Error::FailedPrecondition("container " + id +
                                             " belongs to no pod (no io.kubernetes.cri.sandbox-id annotation), "
                                             "so the host namespace path has nothing to map to in the guest");
          case PodRole::kSandbox:
            if (ns.type == "network") {
              // The pod's network is the VM's: stay in the guest's own.
              return container::NamespaceTarget{UniqueFd(), "the guest's network namespace"};
            }
            return Error::InvalidArgument("a pod sandbox creates its own " + ns.type +
                                          " namespace; joining one by host path is not supported");
          case PodRole::kPodContainer:
            return SandboxNamespace(m.sandbox_id, ns);
        }
        return Error::Internal("unknown pod role");
      });
}

Result<container::NamespaceTarget> PodNamespaces::SandboxNamespace(const std::string& sandbox_id,
                                                                   const oci::Namespace& ns) {
  std::shared_ptr<Sandbox> sb;
  {
    MutexLock lock(mu_);
    auto it = sandboxes_.find(sandbox_id);
    if (it != sandboxes_.end()) sb = it->second;
  }
  if (!sb) {
    return Error::FailedPrecondition("its pod sandbox " + Short(sandbox_id) + " is not running in this VM");
  }
  const char* proc = container::NamespaceProcName(ns.type);
  if (*proc == '\0') return Error::InvalidArgument("unknown namespace type \"" + Short(ns.type) + "\"");
  std::string path = "/proc/" + std::to_string(sb->pidfd.pid()) + "/ns/" + proc;
  auto fd = Open(path, O_RDONLY);
  // Opened through the pid: make sure it still was the sandbox's init.
  bool alive = sb->pidfd.Signal(0).ok();
  if (!fd.ok() || !alive) {
    return Error::FailedPrecondition("its pod sandbox " + Short(sandbox_id) + " has exited");
  }
  return container::NamespaceTarget{std::move(fd).value(), ns.type + " namespace of pod sandbox " + Short(sandbox_id)};
}

Status PodNamespaces::Register(const std::string& id, const std::map<std::string, std::string>& annotations,
                               pid_t pid) {
  CASK_ASSIGN_OR_RETURN(PodMembership m, PodMembershipOf(annotations, id));
  if (m.role != PodRole::kSandbox) return Ok();
  auto sb = std::make_shared<Sandbox>();
  CASK_ASSIGN_OR_RETURN(sb->pidfd, sys::Pidfd::Open(pid).Context("pod sandbox " + id));
  MutexLock lock(mu_);
  sandboxes_[id] = std::move(sb);
  return Ok();
}

void PodNamespaces::Forget(const std::string& id) {
  MutexLock lock(mu_);
  sandboxes_.erase(id);
}

}  // namespace cask::agent
