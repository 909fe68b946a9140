// Namespaces: which ones a container process creates or joins, in which
// order, and the per-namespace settings (id maps, hostname, sysctl).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/oci/spec.h"

namespace cask::container {

// "pid" -> CLONE_NEWPID ...; 0 for an unknown type.
int NamespaceFlag(const std::string& type);
// "network" -> "net" (the name under /proc/<pid>/ns/); "" if unknown.
const char* NamespaceProcName(const std::string& type);

// A namespace to setns(2) into: an open fd and its CLONE_NEW* type.
struct NamespaceJoin {
  UniqueFd fd;
  int type = 0;
  std::string what;  // for error messages, e.g. "network namespace /run/netns/x"
};

struct NamespacePlan {
  std::vector<NamespaceJoin> joins;  // ordered: user first, mount last
  int unshare_flags = 0;             // CLONE_NEW* to create (CLONE_NEWUSER excluded)
  bool new_user = false;             // create a user namespace first
  std::string uid_map, gid_map;      // contents for /proc/<pid>/{uid,gid}_map
  bool new_uts = false;
};

// Where a spec namespace with a `path` is found in the guest. The paths in a
// spec are the host's (CRI's /var/run/netns/cni-..., /proc/<host pid>/ns/..)
// and mean nothing inside the VM: they are never opened here. The caller
// (the agent, which knows the pod) maps each to a namespace of its own:
//   - `fd` valid: join that namespace;
//   - `fd` empty: stay in the caller's namespace of that type (the pod
//     sandbox's network: the VM is the pod's network);
//   - an error: the container is refused with it.
struct NamespaceTarget {
  UniqueFd fd;
  std::string what;  // for error messages, e.g. "network namespace of sandbox p1"
};
using NamespaceResolver = std::function<Result<NamespaceTarget>(const oci::Namespace& ns)>;

// Validates the spec's namespaces and maps the `path` ones through
// `resolve`. A type listed twice, an unknown type, or a path that `resolve`
// refuses is an error; without a resolver any path is refused
// (FAILED_PRECONDITION naming it), never opened.
Result<NamespacePlan> PlanNamespaces(const oci::Spec& spec, const NamespaceResolver& resolve);

// The namespaces of a running process that differ from the caller's, for
// Exec, ordered like PlanNamespaces.
Result<std::vector<NamespaceJoin>> NamespacesOf(pid_t pid);

// Child side: setns into each, in order.
Status JoinNamespaces(const std::vector<NamespaceJoin>& joins);

// "0 1000 65536\n" lines for uid_map/gid_map.
std::string IdMapText(const std::vector<oci::IdMapping>& maps);

// True for the sysctls that belong to a namespace a container has (net.*
// to the network namespace; kernel.shm*, kernel.msg*, kernel.sem and
// fs.mqueue.* to the IPC namespace). Every other sysctl is global to the
// guest kernel, i.e. to every container of the pod VM.
bool IsNamespacedSysctl(std::string_view key);
// Validates sysctl keys ("net.ipv4.ip_forward"; no "/" or ".." parts, a
// namespaced sysctl only: INVALID_ARGUMENT naming the key otherwise) and
// values (one line, at most 4 KiB).
Status ValidateSysctl(const std::map<std::string, std::string>& sysctl);
// Child side, after entering the rootfs: writes /proc/sys/<key>.
Status WriteSysctl(const std::map<std::string, std::string>& sysctl);

}  // namespace cask::container
