#include "lib/container/namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "lib/base/fs.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace cask::container {
namespace {

struct NsType {
  const char* type;
  const char* proc;
  int flag;
};

// In setns order: user first (it owns the others), mount last (it changes
// the root under which later paths would be resolved).
constexpr NsType kTypes[] = {
    {"user", "user", CLONE_NEWUSER},     {"cgroup", "cgroup", CLONE_NEWCGROUP},
    {"ipc", "ipc", CLONE_NEWIPC},        {"uts", "uts", CLONE_NEWUTS},
    {"network", "net", CLONE_NEWNET},    {"pid", "pid", CLONE_NEWPID},
    {"time", "time", CLONE_NEWTIME},     {"mount", "mnt", CLONE_NEWNS},
};

int Order(int flag) {
  for (size_t i = 0; i < std::size(kTypes); ++i) {
    if (kTypes[i].flag == flag) return static_cast<int>(i);
  }
  return 99;
}

}  // namespace

int NamespaceFlag(const std::string& type) {
  for (const auto& t : kTypes) {
    if (type == t.type) return t.flag;
  }
  return 0;
}

const char* NamespaceProcName(const std::string& type) {
  for (const auto& t : kTypes) {
    if (type == t.type) return t.proc;
  }
  return "";
}

Result<NamespacePlan> PlanNamespaces(const oci::Spec& spec, const NamespaceResolver& resolve) {
  NamespacePlan plan;
  if (!spec.linux) return plan;
  int seen = 0;
  for (const auto& ns : spec.linux->namespaces) {
    int flag = NamespaceFlag(ns.type);
    if (flag == 0) return Error::InvalidArgument("unknown namespace type \"" + ns.type + "\"");
    if (seen & flag) return Error::InvalidArgument("namespace " + ns.type + " listed twice");
    seen |= flag;
    if (!ns.path.empty()) {
      if (!resolve) {
        return Error::FailedPrecondition(ns.type + " namespace path \"" + ns.path +
                                         "\" is a host path and this container has no pod to map it to");
      }
      auto target = resolve(ns);
      if (!target.ok()) return std::move(target).error().Wrap(ns.type + " namespace " + ns.path);
      if (target->fd) plan.joins.push_back(NamespaceJoin{std::move(target->fd), flag, target->what});
    } else if (flag == CLONE_NEWUSER) {
      plan.new_user = true;
    } else {
      plan.unshare_flags |= flag;
    }
    if (flag == CLONE_NEWUTS && ns.path.empty()) plan.new_uts = true;
  }
  std::stable_sort(plan.joins.begin(), plan.joins.end(),
                   [](const NamespaceJoin& a, const NamespaceJoin& b) {
                     return Order(a.type) < Order(b.type);
                   });
  if (plan.new_user) {
    if (spec.linux->uid_mappings.empty() || spec.linux->gid_mappings.empty()) {
      return Error::InvalidArgument("a new user namespace needs uidMappings and gidMappings");
    }
    plan.uid_map = IdMapText(spec.linux->uid_mappings);
    plan.gid_map = IdMapText(spec.linux->gid_mappings);
  }
  return plan;
}

Result<std::vector<NamespaceJoin>> NamespacesOf(pid_t pid) {
  std::vector<NamespaceJoin> joins;
  for (const auto& t : kTypes) {
    std::string theirs = "/proc/" + std::to_string(pid) + "/ns/" + t.proc;
    std::string ours = std::string("/proc/self/ns/") + t.proc;
    struct stat a {}, b {};
    if (stat(ours.c_str(), &a) != 0) continue;  // kernel without this type
    if (stat(theirs.c_str(), &b) != 0) {
      return Error::Sys(errno, "namespace " + theirs + " of the container init");
    }
    if (a.st_ino == b.st_ino && a.st_dev == b.st_dev) continue;
    CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(theirs, O_RDONLY));
    joins.push_back(NamespaceJoin{std::move(fd), t.flag, std::string(t.type) + " namespace of pid " +
                                                              std::to_string(pid)});
  }
  return joins;
}

Status JoinNamespaces(const std::vector<NamespaceJoin>& joins) {
  for (const auto& j : joins) {
    if (setns(j.fd.get(), j.type) != 0) return Error::Sys(errno, "join " + j.what);
  }
  return Ok();
}

std::string IdMapText(const std::vector<oci::IdMapping>& maps) {
  std::string out;
  for (const auto& m : maps) {
    out += std::to_string(m.container_id) + " " + std::to_string(m.host_id) + " " +
           std::to_string(m.size) + "\n";
  }
  return out;
}

bool IsNamespacedSysctl(std::string_view key) {
  auto starts = [&](std::string_view p) { return key.substr(0, p.size()) == p; };
  return starts("net.") || starts("kernel.shm") || starts("kernel.msg") || key == "kernel.sem" ||
         starts("fs.mqueue.");
}

Status ValidateSysctl(const std::map<std::string, std::string>& sysctl) {
  for (const auto& [key, value] : sysctl) {
    bool bad = key.empty() || key.find('/') != std::string::npos || key.front() == '.' ||
               key.back() == '.' || key.find("..") != std::string::npos;
    if (bad) return Error::InvalidArgument("bad sysctl name \"" + key + "\"");
    if (!IsNamespacedSysctl(key))
      return Error::InvalidArgument("sysctl " + key +
                                    ": not a namespaced sysctl (allowed: net.*, kernel.shm*, kernel.msg*, "
                                    "kernel.sem, fs.mqueue.*); it would change the whole pod VM");
    if (value.find('\n') != std::string::npos || value.size() > 4096)
      return Error::InvalidArgument("sysctl " + key + ": bad value");
  }
  return Ok();
}

Status WriteSysctl(const std::map<std::string, std::string>& sysctl) {
  for (const auto& [key, value] : sysctl) {
    std::string path = "/proc/sys/" + key;
    for (size_t i = 10; i < path.size(); ++i) {
      if (path[i] == '.') path[i] = '/';
    }
    CASK_TRY(WriteFile(path, value).Context("sysctl " + key));
  }
  return Ok();
}

}  // namespace cask::container
