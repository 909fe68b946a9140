// Pod namespaces in the guest: which namespace a container's spec means
// when it names one by path.
//
// The paths in a spec come from the host: CRI puts the pod's network
// namespace (/var/run/netns/cni-...) in the sandbox's spec and the sandbox
// task's namespaces (/proc/<host pid>/ns/{net,ipc,uts,pid}) in its other
// containers' specs. None of these means anything inside the VM, and
// opening them here would let whoever writes the spec pick any guest
// namespace. So they are never opened; instead:
//   - the pod's sandbox container (container-type "sandbox"): its network
//     namespace path maps to the guest's own network namespace (the VM is
//     the pod's network); a path for any other type is refused;
//   - a pod container (container-type "container", with a sandbox id):
//     each path maps to the same type of namespace of its sandbox
//     container's init, found in this table; a sandbox that is not running
//     in this VM is an error (FAILED_PRECONDITION naming it);
//   - a container with no pod annotations: every path is refused.
// A path of a shape CRI never sends (other than <dir>/netns/<name> and
// /proc/<pid>/ns/<type>) is refused (INVALID_ARGUMENT) in every case.
// Pod annotations: containerd CRI's io.kubernetes.cri.container-type /
// sandbox-id, then CRI-O's io.kubernetes.cri-o.ContainerType / SandboxID.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "lib/base/result.h"
#include "lib/base/thread_annotations.h"
#include "lib/base/unique_fd.h"
#include "lib/container/namespaces.h"
#include "lib/oci/spec.h"
#include "lib/sys/pidfd.h"

namespace cask::agent {

enum class PodRole { kStandalone, kSandbox, kPodContainer };

struct PodMembership {
  PodRole role = PodRole::kStandalone;
  std::string sandbox_id;  // kPodContainer: its pod's sandbox container
};

// From the spec's annotations. An unknown container-type value, a pod
// container without a sandbox id or naming itself is INVALID_ARGUMENT.
Result<PodMembership> PodMembershipOf(const std::map<std::string, std::string>& annotations,
                                      std::string_view id);

// True for the namespace path shapes the host sends: ".../netns/<name>"
// and "/proc/<pid>/ns/<name>" (no "..", no empty component).
bool IsHostNamespacePath(std::string_view path);

class PodNamespaces {
 public:
  // The resolver for container `id` with `spec` (see container.h
  // CreateOptions::resolve_namespace); it looks the sandbox up when called.
  Result<container::NamespaceResolver> ResolverFor(const std::string& id, const oci::Spec& spec);

  // After `id` was created with init `pid`: remembers it if it is a pod
  // sandbox (a pidfd keeps a reused pid from being taken for it).
  Status Register(const std::string& id, const std::map<std::string, std::string>& annotations, pid_t pid);
  // When `id` is removed.
  void Forget(const std::string& id);

 private:
  struct Sandbox {
    sys::Pidfd pidfd;  // of its init; pidfd.pid() is its pid
  };
  Result<container::NamespaceTarget> SandboxNamespace(const std::string& sandbox_id, const oci::Namespace& ns);

  Mutex mu_;
  std::map<std::string, std::shared_ptr<Sandbox>> sandboxes_ GUARDED_BY(mu_);
};

}  // namespace cask::agent
