#include "lib/sandbox/pod_netns.h"

#include <sys/stat.h>

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

}  // namespace cask::sandbox
