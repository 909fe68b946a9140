// What a pod sandbox's OCI spec asks of the host's namespaces, as a VM
// runtime can honour it. A pod VM has its own kernel: it cannot share the
// host's network, PID or IPC namespace, so a sandbox spec that asks for
// any of them (the entry is missing, as containerd's CRI writes it for
// hostNetwork / hostPID / hostIPC pods, or a pid/ipc entry joins an
// existing namespace by path) is refused before anything is made. The
// network entry's path is the pod's network namespace that CNI set up;
// one that is the host's own namespace is refused too (its interfaces
// would be handed to the VM).
#pragma once

#include <string>
#include <string_view>

#include "lib/base/result.h"
#include "lib/oci/spec.h"

namespace cask::sandbox {

// The pod's network namespace path, or "" when the spec asks for a new,
// empty one (ctr run without --with-ns: the VM gets no NIC).
// FAILED_PRECONDITION, naming the namespace, for what a VM cannot do.
// `host_netns` is the file compared with the path (the caller's own
// namespace); a path that is not a network namespace is left to
// lib/net to refuse.
Result<std::string> PodNetnsPath(const oci::Spec& sandbox_spec,
                                 const std::string& host_netns = "/proc/self/ns/net");

// The same refusal read straight from a config.json that does not parse
// as a whole: containerd's spec for a hostNetwork pod also keeps the
// pod's hostname while dropping the uts namespace, which the OCI
// validation refuses first, with an error that does not say why. Ok when
// the JSON is unreadable, has no well-formed linux.namespaces list (the
// parser's own error then stands), is a pod container's (container-type
// "container") or asks for nothing a VM cannot do.
Status RefuseHostNamespacesInJson(std::string_view config_json);

}  // namespace cask::sandbox
