// Semantic checks of a parsed spec, before any side effect. The first
// problem found is returned as INVALID_ARGUMENT naming its JSON path.
#include <set>
#include <string>
#include <string_view>

#include "lib/oci/names.h"
#include "lib/oci/parse.h"

namespace cask::oci {
namespace {

// HOST_NAME_MAX on Linux.
constexpr size_t kMaxHostname = 64;
// Kernel bounds of cpu.max / cfs_period_us (1 ms .. 1 s) and minimum quota.
constexpr uint64_t kMinCpuPeriod = 1000;
constexpr uint64_t kMaxCpuPeriod = 1000000;
constexpr int64_t kMinCpuQuota = 1000;
// cgroup v1 cpu.shares upper bound (runc converts shares to a v2 weight).
constexpr uint64_t kMaxCpuShares = 262144;

std::string Join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return std::string(path) + "." + std::string(key);
}

std::string At(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

std::string MapKey(std::string_view path, std::string_view key) {
  return std::string(path) + "[\"" + std::string(key) + "\"]";
}

Error Invalid(std::string_view path, std::string_view msg) {
  return Error::InvalidArgument(std::string(path) + ": " + std::string(msg));
}

std::string Quote(std::string_view s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '\0') {
      q += "\\0";
    } else {
      q += c;
    }
  }
  return q + "\"";
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

Status NoNul(std::string_view path, std::string_view s) {
  if (HasNul(s)) return Invalid(path, "must not contain a NUL byte");
  return Ok();
}

Status Absolute(std::string_view path, std::string_view s) {
  if (s.empty() || s[0] != '/') return Invalid(path, "must be an absolute path, got " + Quote(s));
  return NoNul(path, s);
}

Status ValidateCapabilitySet(const std::vector<std::string>& set, std::string_view path) {
  for (size_t i = 0; i < set.size(); ++i) {
    if (!CapabilityNumber(set[i])) {
      return Invalid(At(path, i), "unknown capability " + Quote(set[i]));
    }
  }
  return Ok();
}

// "0-3,5,7-8": the cpuset list format.
bool IsCpuList(std::string_view s) {
  if (s.empty()) return true;
  size_t i = 0;
  while (true) {
    auto number = [&]() {
      size_t start = i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
      return i > start;
    };
    if (!number()) return false;
    if (i < s.size() && s[i] == '-') {
      ++i;
      if (!number()) return false;
    }
    if (i == s.size()) return true;
    if (s[i] != ',') return false;
    ++i;
  }
}

// A file name inside one directory: not empty, no '/', not "." or "..".
bool IsPlainName(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string_view::npos &&
         !HasNul(s);
}

// A sysctl key as written in specs ("net.ipv4.ip_forward", also with '/'
// separators). It becomes a path under /proc/sys, so it must not climb out.
bool IsSysctlKey(std::string_view s) {
  if (s.empty() || s[0] == '/' || s[0] == '.' || HasNul(s)) return false;
  return s.find("..") == std::string_view::npos && s.find("/.") == std::string_view::npos;
}

Status ValidateMemory(const MemoryResources& m, std::string_view path) {
  if (m.limit && *m.limit != -1 && *m.limit <= 0) {
    return Invalid(Join(path, "limit"),
                   "must be positive or -1 (unlimited), got " + std::to_string(*m.limit));
  }
  auto at_least_minus_one = [&](const std::optional<int64_t>& v, const char* key) -> Status {
    if (v && *v < -1) {
      return Invalid(Join(path, key),
                     "must be -1 (unlimited) or non-negative, got " + std::to_string(*v));
    }
    return Ok();
  };
  CASK_TRY(at_least_minus_one(m.reservation, "reservation"));
  CASK_TRY(at_least_minus_one(m.swap, "swap"));
  CASK_TRY(at_least_minus_one(m.kernel, "kernel"));
  CASK_TRY(at_least_minus_one(m.kernel_tcp, "kernelTCP"));
  if (m.swappiness && *m.swappiness > 100) {
    return Invalid(Join(path, "swappiness"),
                   "must be between 0 and 100, got " + std::to_string(*m.swappiness));
  }
  return Ok();
}

Status ValidateCpu(const CpuResources& c, std::string_view path) {
  if (c.shares && *c.shares > kMaxCpuShares) {
    return Invalid(Join(path, "shares"), "must be at most " + std::to_string(kMaxCpuShares) +
                                             ", got " + std::to_string(*c.shares));
  }
  if (c.quota && *c.quota != -1 && *c.quota < kMinCpuQuota) {
    return Invalid(Join(path, "quota"), "must be -1 (unlimited) or at least " +
                                            std::to_string(kMinCpuQuota) + " (1ms), got " +
                                            std::to_string(*c.quota));
  }
  if (c.period && (*c.period < kMinCpuPeriod || *c.period > kMaxCpuPeriod)) {
    return Invalid(Join(path, "period"), "must be between " + std::to_string(kMinCpuPeriod) +
                                             " and " + std::to_string(kMaxCpuPeriod) +
                                             " microseconds, got " + std::to_string(*c.period));
  }
  if (c.realtime_runtime && *c.realtime_runtime < -1) {
    return Invalid(Join(path, "realtimeRuntime"),
                   "must be -1 or non-negative, got " + std::to_string(*c.realtime_runtime));
  }
  if (!IsCpuList(c.cpus)) {
    return Invalid(Join(path, "cpus"), "expected a list like \"0-3,5\", got " + Quote(c.cpus));
  }
  if (!IsCpuList(c.mems)) {
    return Invalid(Join(path, "mems"), "expected a list like \"0-1\", got " + Quote(c.mems));
  }
  return Ok();
}

Status ValidateSeccomp(const Seccomp& s, std::string_view path) {
  if (!IsSeccompAction(s.default_action)) {
    return Invalid(Join(path, "defaultAction"), "unknown seccomp action " + Quote(s.default_action));
  }
  for (size_t i = 0; i < s.architectures.size(); ++i) {
    if (!IsSeccompArch(s.architectures[i])) {
      return Invalid(At(Join(path, "architectures"), i),
                     "unknown seccomp architecture " + Quote(s.architectures[i]));
    }
  }
  for (size_t i = 0; i < s.flags.size(); ++i) {
    if (!IsSeccompFlag(s.flags[i])) {
      return Invalid(At(Join(path, "flags"), i), "unknown seccomp flag " + Quote(s.flags[i]));
    }
  }
  for (size_t i = 0; i < s.syscalls.size(); ++i) {
    const SeccompSyscall& sc = s.syscalls[i];
    std::string sp = At(Join(path, "syscalls"), i);
    if (sc.names.empty()) return Invalid(Join(sp, "names"), "must not be empty");
    for (size_t k = 0; k < sc.names.size(); ++k) {
      if (sc.names[k].empty() || HasNul(sc.names[k])) {
        return Invalid(At(Join(sp, "names"), k), "must be a syscall name, got " + Quote(sc.names[k]));
      }
    }
    if (!IsSeccompAction(sc.action)) {
      return Invalid(Join(sp, "action"), "unknown seccomp action " + Quote(sc.action));
    }
    for (size_t k = 0; k < sc.args.size(); ++k) {
      const SeccompArg& a = sc.args[k];
      std::string ap = At(Join(sp, "args"), k);
      // Syscalls take at most 6 arguments.
      if (a.index > 5) {
        return Invalid(Join(ap, "index"), "must be between 0 and 5, got " + std::to_string(a.index));
      }
      if (!IsSeccompOperator(a.op)) {
        return Invalid(Join(ap, "op"), "unknown seccomp operator " + Quote(a.op));
      }
    }
  }
  return Ok();
}

Status ValidateMappings(const std::vector<IdMapping>& maps, std::string_view path) {
  for (size_t i = 0; i < maps.size(); ++i) {
    if (maps[i].size == 0) return Invalid(Join(At(path, i), "size"), "must be positive");
  }
  return Ok();
}

Status ValidateLinux(const Linux& l, const Spec& spec) {
  std::set<std::string> seen;
  for (size_t i = 0; i < l.namespaces.size(); ++i) {
    const Namespace& ns = l.namespaces[i];
    std::string np = At("linux.namespaces", i);
    if (!IsNamespaceType(ns.type)) {
      return Invalid(Join(np, "type"), "unknown namespace type " + Quote(ns.type));
    }
    if (!seen.insert(ns.type).second) {
      return Invalid(Join(np, "type"), "duplicate namespace " + Quote(ns.type));
    }
    if (!ns.path.empty()) CASK_TRY(Absolute(Join(np, "path"), ns.path));
  }
  bool has_user_ns = seen.count("user") > 0;
  if (!has_user_ns && (!l.uid_mappings.empty() || !l.gid_mappings.empty())) {
    return Invalid(l.uid_mappings.empty() ? "linux.gidMappings" : "linux.uidMappings",
                   "id mappings need a user namespace in linux.namespaces");
  }
  CASK_TRY(ValidateMappings(l.uid_mappings, "linux.uidMappings"));
  CASK_TRY(ValidateMappings(l.gid_mappings, "linux.gidMappings"));
  if (!spec.hostname.empty() && seen.count("uts") == 0) {
    return Invalid("hostname", "setting a hostname needs a uts namespace in linux.namespaces");
  }
  if (l.resources) CASK_TRY(ValidateLinuxResources(*l.resources, "linux.resources"));
  CASK_TRY(NoNul("linux.cgroupsPath", l.cgroups_path));
  for (const auto& [key, value] : l.sysctl) {
    if (!IsSysctlKey(key)) return Invalid(MapKey("linux.sysctl", key), "invalid sysctl name");
    CASK_TRY(NoNul(MapKey("linux.sysctl", key), value));
  }
  if (l.seccomp) CASK_TRY(ValidateSeccomp(*l.seccomp, "linux.seccomp"));
  for (size_t i = 0; i < l.devices.size(); ++i) {
    const Device& d = l.devices[i];
    std::string dp = At("linux.devices", i);
    CASK_TRY(Absolute(Join(dp, "path"), d.path));
    if (d.type != "c" && d.type != "b" && d.type != "u" && d.type != "p") {
      return Invalid(Join(dp, "type"), "must be one of c, b, u, p, got " + Quote(d.type));
    }
    if (d.major < 0) return Invalid(Join(dp, "major"), "must not be negative");
    if (d.minor < 0) return Invalid(Join(dp, "minor"), "must not be negative");
  }
  for (size_t i = 0; i < l.masked_paths.size(); ++i) {
    CASK_TRY(Absolute(At("linux.maskedPaths", i), l.masked_paths[i]));
  }
  for (size_t i = 0; i < l.readonly_paths.size(); ++i) {
    CASK_TRY(Absolute(At("linux.readonlyPaths", i), l.readonly_paths[i]));
  }
  if (!IsRootfsPropagation(l.rootfs_propagation)) {
    return Invalid("linux.rootfsPropagation",
                   "must be one of shared, slave, private, unbindable (or r-prefixed), got " +
                       Quote(l.rootfs_propagation));
  }
  return Ok();
}

}  // namespace

Status ValidateProcess(const Process& p, std::string_view prefix) {
  if (p.args.empty()) return Invalid(Join(prefix, "args"), "must be a non-empty array of strings");
  if (p.args[0].empty()) return Invalid(At(Join(prefix, "args"), 0), "must not be empty");
  for (size_t i = 0; i < p.args.size(); ++i) CASK_TRY(NoNul(At(Join(prefix, "args"), i), p.args[i]));
  for (size_t i = 0; i < p.env.size(); ++i) {
    const std::string& e = p.env[i];
    std::string ep = At(Join(prefix, "env"), i);
    size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Invalid(ep, "expected KEY=value, got " + Quote(e));
    }
    CASK_TRY(NoNul(ep, e));
  }
  CASK_TRY(Absolute(Join(prefix, "cwd"), p.cwd));
  if (p.capabilities) {
    std::string cp = Join(prefix, "capabilities");
    CASK_TRY(ValidateCapabilitySet(p.capabilities->bounding, Join(cp, "bounding")));
    CASK_TRY(ValidateCapabilitySet(p.capabilities->effective, Join(cp, "effective")));
    CASK_TRY(ValidateCapabilitySet(p.capabilities->inheritable, Join(cp, "inheritable")));
    CASK_TRY(ValidateCapabilitySet(p.capabilities->permitted, Join(cp, "permitted")));
    CASK_TRY(ValidateCapabilitySet(p.capabilities->ambient, Join(cp, "ambient")));
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < p.rlimits.size(); ++i) {
    const Rlimit& r = p.rlimits[i];
    std::string rp = At(Join(prefix, "rlimits"), i);
    if (!RlimitNumber(r.type)) return Invalid(Join(rp, "type"), "unknown rlimit " + Quote(r.type));
    if (!seen.insert(r.type).second) {
      return Invalid(Join(rp, "type"), "duplicate rlimit " + Quote(r.type));
    }
    if (r.soft > r.hard) {
      return Invalid(rp, "soft limit " + std::to_string(r.soft) + " exceeds hard limit " +
                             std::to_string(r.hard));
    }
  }
  if (p.oom_score_adj && (*p.oom_score_adj < -1000 || *p.oom_score_adj > 1000)) {
    return Invalid(Join(prefix, "oomScoreAdj"),
                   "must be between -1000 and 1000, got " + std::to_string(*p.oom_score_adj));
  }
  return Ok();
}

Status ValidateLinuxResources(const LinuxResources& r, std::string_view prefix) {
  for (size_t i = 0; i < r.devices.size(); ++i) {
    const DeviceCgroup& d = r.devices[i];
    std::string dp = At(Join(prefix, "devices"), i);
    if (!d.type.empty() && d.type != "a" && d.type != "c" && d.type != "b") {
      return Invalid(Join(dp, "type"), "must be one of a, c, b, got " + Quote(d.type));
    }
    if (d.access.find_first_not_of("rwm") != std::string::npos) {
      return Invalid(Join(dp, "access"), "must consist of r, w, m, got " + Quote(d.access));
    }
    if (d.major && *d.major < -1) return Invalid(Join(dp, "major"), "must be -1 (any) or non-negative");
    if (d.minor && *d.minor < -1) return Invalid(Join(dp, "minor"), "must be -1 (any) or non-negative");
  }
  if (r.memory) CASK_TRY(ValidateMemory(*r.memory, Join(prefix, "memory")));
  if (r.cpu) CASK_TRY(ValidateCpu(*r.cpu, Join(prefix, "cpu")));
  if (r.block_io && r.block_io->weight &&
      (*r.block_io->weight < 10 || *r.block_io->weight > 1000)) {
    return Invalid(Join(Join(prefix, "blockIO"), "weight"),
                   "must be between 10 and 1000, got " + std::to_string(*r.block_io->weight));
  }
  for (size_t i = 0; i < r.hugepage_limits.size(); ++i) {
    const std::string& ps = r.hugepage_limits[i].page_size;
    if (ps.empty() || !IsPlainName(ps)) {
      return Invalid(Join(At(Join(prefix, "hugepageLimits"), i), "pageSize"),
                     "expected a page size like \"2MB\", got " + Quote(ps));
    }
  }
  for (const auto& [key, value] : r.unified) {
    // Keys become file names in the container's cgroup directory.
    if (!IsPlainName(key) || key.find('.') == std::string::npos) {
      return Invalid(MapKey(Join(prefix, "unified"), key),
                     "expected a cgroup v2 file name like \"memory.high\"");
    }
    CASK_TRY(NoNul(MapKey(Join(prefix, "unified"), key), value));
  }
  return Ok();
}

// The virtio-fs tag of the pod share (the same word as hypervisor::kVirtiofsTag;
// lib/oci depends on nothing below it, so it is repeated here).
constexpr std::string_view kPodShareTag = "cask";

Status Validate(const Spec& spec) {
  if (spec.oci_version.empty()) return Invalid("ociVersion", "must be set");
  if (spec.oci_version.rfind("1.", 0) != 0) {
    return Invalid("ociVersion", "unsupported version " + Quote(spec.oci_version) + ", want 1.x");
  }
  if (spec.process) CASK_TRY(ValidateProcess(*spec.process, "process"));
  if (spec.root) {
    if (spec.root->path.empty()) return Invalid("root.path", "must not be empty");
    CASK_TRY(NoNul("root.path", spec.root->path));
  }
  if (spec.hostname.size() > kMaxHostname) {
    return Invalid("hostname", "longer than " + std::to_string(kMaxHostname) + " bytes");
  }
  CASK_TRY(NoNul("hostname", spec.hostname));
  if (spec.domainname.size() > kMaxHostname) {
    return Invalid("domainname", "longer than " + std::to_string(kMaxHostname) + " bytes");
  }
  CASK_TRY(NoNul("domainname", spec.domainname));
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    const Mount& m = spec.mounts[i];
    std::string mp = At("mounts", i);
    CASK_TRY(Absolute(Join(mp, "destination"), m.destination));
    CASK_TRY(NoNul(Join(mp, "source"), m.source));
    CASK_TRY(NoNul(Join(mp, "type"), m.type));
    for (size_t k = 0; k < m.options.size(); ++k) CASK_TRY(NoNul(At(Join(mp, "options"), k), m.options[k]));
    // The pod's virtio-fs share (tag "cask") holds every container's rootfs
    // and volumes; a container that mounted it would reach the others'.
    if (m.type == "virtiofs" && m.source == kPodShareTag)
      return Invalid(Join(mp, "source"), "a virtiofs mount of the virtio-fs tag \"" + std::string(kPodShareTag) +
                                             "\": that is the pod's own share and cannot be mounted into a container");
  }
  if (spec.linux) {
    CASK_TRY(ValidateLinux(*spec.linux, spec));
  } else if (!spec.hostname.empty()) {
    return Invalid("hostname", "setting a hostname needs a uts namespace in linux.namespaces");
  }
  return Ok();
}

}  // namespace cask::oci
