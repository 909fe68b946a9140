// Model -> JSON, in the field order of the runtime-spec Go types and with
// their omitempty rules, so that output reads like runc's.
#include <string>

#include <nlohmann/json.hpp>

#include "lib/oci/parse.h"

namespace cask::oci {
namespace {

using Json = nlohmann::ordered_json;

template <typename T>
void PutOpt(Json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}

void PutStr(Json& j, const char* key, const std::string& v) {
  if (!v.empty()) j[key] = v;
}

template <typename T>
void PutVec(Json& j, const char* key, const std::vector<T>& v) {
  if (!v.empty()) j[key] = v;
}

void PutMap(Json& j, const char* key, const std::map<std::string, std::string>& m) {
  if (m.empty()) return;
  Json o = Json::object();
  for (const auto& [k, v] : m) o[k] = v;
  j[key] = std::move(o);
}

template <typename T, typename F>
void PutObjects(Json& j, const char* key, const std::vector<T>& v, F to_json) {
  if (v.empty()) return;
  Json a = Json::array();
  for (const T& e : v) a.push_back(to_json(e));
  j[key] = std::move(a);
}

Json ProcessJson(const Process& p) {
  Json j = Json::object();
  if (p.terminal) j["terminal"] = true;
  if (p.console_size) {
    j["consoleSize"] = {{"height", p.console_size->height}, {"width", p.console_size->width}};
  }
  Json user = {{"uid", p.user.uid}, {"gid", p.user.gid}};
  PutOpt(user, "umask", p.user.umask);
  PutVec(user, "additionalGids", p.user.additional_gids);
  j["user"] = std::move(user);
  PutVec(j, "args", p.args);
  PutVec(j, "env", p.env);
  j["cwd"] = p.cwd;
  if (p.capabilities) {
    Json caps = Json::object();
    PutVec(caps, "bounding", p.capabilities->bounding);
    PutVec(caps, "effective", p.capabilities->effective);
    PutVec(caps, "inheritable", p.capabilities->inheritable);
    PutVec(caps, "permitted", p.capabilities->permitted);
    PutVec(caps, "ambient", p.capabilities->ambient);
    j["capabilities"] = std::move(caps);
  }
  PutObjects(j, "rlimits", p.rlimits, [](const Rlimit& r) {
    return Json{{"type", r.type}, {"hard", r.hard}, {"soft", r.soft}};
  });
  if (p.no_new_privileges) j["noNewPrivileges"] = true;
  PutStr(j, "apparmorProfile", p.apparmor_profile);
  PutOpt(j, "oomScoreAdj", p.oom_score_adj);
  PutStr(j, "selinuxLabel", p.selinux_label);
  return j;
}

Json ResourcesJson(const LinuxResources& r) {
  Json j = Json::object();
  PutObjects(j, "devices", r.devices, [](const DeviceCgroup& d) {
    Json e = {{"allow", d.allow}};
    PutStr(e, "type", d.type);
    PutOpt(e, "major", d.major);
    PutOpt(e, "minor", d.minor);
    PutStr(e, "access", d.access);
    return e;
  });
  if (r.memory) {
    const MemoryResources& m = *r.memory;
    Json e = Json::object();
    PutOpt(e, "limit", m.limit);
    PutOpt(e, "reservation", m.reservation);
    PutOpt(e, "swap", m.swap);
    PutOpt(e, "kernel", m.kernel);
    PutOpt(e, "kernelTCP", m.kernel_tcp);
    PutOpt(e, "swappiness", m.swappiness);
    PutOpt(e, "disableOOMKiller", m.disable_oom_killer);
    j["memory"] = std::move(e);
  }
  if (r.cpu) {
    const CpuResources& c = *r.cpu;
    Json e = Json::object();
    PutOpt(e, "shares", c.shares);
    PutOpt(e, "quota", c.quota);
    PutOpt(e, "period", c.period);
    PutOpt(e, "realtimeRuntime", c.realtime_runtime);
    PutOpt(e, "realtimePeriod", c.realtime_period);
    PutStr(e, "cpus", c.cpus);
    PutStr(e, "mems", c.mems);
    j["cpu"] = std::move(e);
  }
  if (r.pids) j["pids"] = {{"limit", r.pids->limit}};
  if (r.block_io) {
    Json e = Json::object();
    PutOpt(e, "weight", r.block_io->weight);
    j["blockIO"] = std::move(e);
  }
  PutObjects(j, "hugepageLimits", r.hugepage_limits, [](const HugepageLimit& h) {
    return Json{{"pageSize", h.page_size}, {"limit", h.limit}};
  });
  PutMap(j, "unified", r.unified);
  return j;
}

Json SeccompJson(const Seccomp& s) {
  Json j = Json::object();
  PutStr(j, "defaultAction", s.default_action);
  PutOpt(j, "defaultErrnoRet", s.default_errno_ret);
  PutVec(j, "architectures", s.architectures);
  PutVec(j, "flags", s.flags);
  PutObjects(j, "syscalls", s.syscalls, [](const SeccompSyscall& sc) {
    Json e = Json::object();
    e["names"] = sc.names;
    e["action"] = sc.action;
    PutOpt(e, "errnoRet", sc.errno_ret);
    PutObjects(e, "args", sc.args, [](const SeccompArg& a) {
      Json arg = {{"index", a.index}, {"value", a.value}};
      if (a.value_two != 0) arg["valueTwo"] = a.value_two;
      arg["op"] = a.op;
      return arg;
    });
    return e;
  });
  return j;
}

Json IdMappingJson(const IdMapping& m) {
  return Json{{"containerID", m.container_id}, {"hostID", m.host_id}, {"size", m.size}};
}

Json LinuxJson(const Linux& l) {
  Json j = Json::object();
  PutObjects(j, "uidMappings", l.uid_mappings, IdMappingJson);
  PutObjects(j, "gidMappings", l.gid_mappings, IdMappingJson);
  PutMap(j, "sysctl", l.sysctl);
  if (l.resources) j["resources"] = ResourcesJson(*l.resources);
  PutStr(j, "cgroupsPath", l.cgroups_path);
  PutObjects(j, "namespaces", l.namespaces, [](const Namespace& ns) {
    Json e = {{"type", ns.type}};
    PutStr(e, "path", ns.path);
    return e;
  });
  PutObjects(j, "devices", l.devices, [](const Device& d) {
    Json e = {{"path", d.path}, {"type", d.type}, {"major", d.major}, {"minor", d.minor}};
    PutOpt(e, "fileMode", d.file_mode);
    PutOpt(e, "uid", d.uid);
    PutOpt(e, "gid", d.gid);
    return e;
  });
  if (l.seccomp) j["seccomp"] = SeccompJson(*l.seccomp);
  PutStr(j, "rootfsPropagation", l.rootfs_propagation);
  PutVec(j, "maskedPaths", l.masked_paths);
  PutVec(j, "readonlyPaths", l.readonly_paths);
  PutStr(j, "mountLabel", l.mount_label);
  return j;
}

Json SpecJson(const Spec& s) {
  Json j = Json::object();
  j["ociVersion"] = s.oci_version;
  if (s.process) j["process"] = ProcessJson(*s.process);
  if (s.root) {
    Json root = {{"path", s.root->path}};
    if (s.root->readonly) root["readonly"] = true;
    j["root"] = std::move(root);
  }
  PutStr(j, "hostname", s.hostname);
  PutStr(j, "domainname", s.domainname);
  PutObjects(j, "mounts", s.mounts, [](const Mount& m) {
    Json e = {{"destination", m.destination}};
    PutStr(e, "type", m.type);
    PutStr(e, "source", m.source);
    PutVec(e, "options", m.options);
    return e;
  });
  PutMap(j, "annotations", s.annotations);
  if (s.linux) j["linux"] = LinuxJson(*s.linux);
  return j;
}

std::string Dump(const Json& j) {
  // Tab indentation like runc; never throws on invalid UTF-8.
  return j.dump(1, '\t', false, Json::error_handler_t::replace);
}

}  // namespace

std::string ToJson(const Spec& spec) { return Dump(SpecJson(spec)); }
std::string ToJson(const Process& p) { return Dump(ProcessJson(p)); }
std::string ToJson(const LinuxResources& r) { return Dump(ResourcesJson(r)); }

}  // namespace cask::oci
