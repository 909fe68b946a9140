// JSON -> model. Every accessor checks the JSON type explicitly and names the
// JSON path on failure; the only nlohmann exception that can occur (a syntax
// error from the parser) is caught right where it is thrown.
#include "lib/oci/parse.h"

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cask::oci {
namespace {

using Json = nlohmann::json;

// Real specs nest at most 6 levels; the bound keeps hostile input from
// costing more than linear time and bounded stack anywhere downstream.
constexpr int kMaxDepth = 64;

std::string Join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string s(path);
  s += '.';
  s += key;
  return s;
}

std::string At(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

std::string MapKey(std::string_view path, std::string_view key) {
  return std::string(path) + "[\"" + std::string(key) + "\"]";
}

Error Invalid(std::string_view path, std::string_view msg) {
  if (path.empty()) return Error::InvalidArgument(std::string(msg));
  return Error::InvalidArgument(std::string(path) + ": " + std::string(msg));
}

std::string Describe(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a fractional number";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

Status ExpectObject(const Json& j, std::string_view path) {
  if (!j.is_object()) return Invalid(path, "expected an object, got " + Describe(j));
  return Ok();
}

// The value of `key` in object `obj`, or nullptr when it is absent or null.
const Json* Field(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// ---- Read overloads: one per model type. All are declared before the
// templates below so that ordinary lookup finds every overload.
Status Read(const Json& j, const std::string& path, std::string* out);
Status Read(const Json& j, const std::string& path, bool* out);
Status Read(const Json& j, const std::string& path, std::map<std::string, std::string>* out);
Status Read(const Json& j, const std::string& path, User* out);
Status Read(const Json& j, const std::string& path, ConsoleSize* out);
Status Read(const Json& j, const std::string& path, Capabilities* out);
Status Read(const Json& j, const std::string& path, Rlimit* out);
Status Read(const Json& j, const std::string& path, Process* out);
Status Read(const Json& j, const std::string& path, Root* out);
Status Read(const Json& j, const std::string& path, Mount* out);
Status Read(const Json& j, const std::string& path, Namespace* out);
Status Read(const Json& j, const std::string& path, IdMapping* out);
Status Read(const Json& j, const std::string& path, DeviceCgroup* out);
Status Read(const Json& j, const std::string& path, MemoryResources* out);
Status Read(const Json& j, const std::string& path, CpuResources* out);
Status Read(const Json& j, const std::string& path, PidsResources* out);
Status Read(const Json& j, const std::string& path, BlockIoResources* out);
Status Read(const Json& j, const std::string& path, HugepageLimit* out);
Status Read(const Json& j, const std::string& path, LinuxResources* out);
Status Read(const Json& j, const std::string& path, SeccompArg* out);
Status Read(const Json& j, const std::string& path, SeccompSyscall* out);
Status Read(const Json& j, const std::string& path, Seccomp* out);
Status Read(const Json& j, const std::string& path, Device* out);
Status Read(const Json& j, const std::string& path, Linux* out);
Status Read(const Json& j, const std::string& path, Spec* out);

template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>)
Status Read(const Json& j, const std::string& path, T* out) {
  auto range_error = [&](const std::string& got) {
    return Invalid(path, "expected an integer between " +
                             std::to_string(std::numeric_limits<T>::min()) + " and " +
                             std::to_string(std::numeric_limits<T>::max()) + ", got " + got);
  };
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (!std::in_range<T>(v)) return range_error(std::to_string(v));
    *out = static_cast<T>(v);
    return Ok();
  }
  if (j.is_number_integer()) {
    int64_t v = j.get<int64_t>();
    if (!std::in_range<T>(v)) return range_error(std::to_string(v));
    *out = static_cast<T>(v);
    return Ok();
  }
  return Invalid(path, "expected an integer, got " + Describe(j));
}

template <typename T>
Status Read(const Json& j, const std::string& path, std::optional<T>* out) {
  T v{};
  CASK_TRY(Read(j, path, &v));
  *out = std::move(v);
  return Ok();
}

template <typename T>
Status Read(const Json& j, const std::string& path, std::vector<T>* out) {
  if (!j.is_array()) return Invalid(path, "expected an array, got " + Describe(j));
  std::vector<T> v;
  v.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const Json& e = j[i];
    // A null element is an error: there is no "absent" element.
    if (e.is_null()) return Invalid(At(path, i), "expected a value, got null");
    CASK_TRY(Read(e, At(path, i), &v.emplace_back()));
  }
  *out = std::move(v);
  return Ok();
}

// Reads obj[key] into *out when present and not null; leaves *out alone
// otherwise.
template <typename T>
Status Get(const Json& obj, const std::string& path, const char* key, T* out) {
  const Json* f = Field(obj, key);
  if (f == nullptr) return Ok();
  return Read(*f, Join(path, key), out);
}

Status Read(const Json& j, const std::string& path, std::string* out) {
  if (!j.is_string()) return Invalid(path, "expected a string, got " + Describe(j));
  *out = j.get_ref<const std::string&>();
  return Ok();
}

Status Read(const Json& j, const std::string& path, bool* out) {
  if (!j.is_boolean()) return Invalid(path, "expected a boolean, got " + Describe(j));
  *out = j.get<bool>();
  return Ok();
}

Status Read(const Json& j, const std::string& path, std::map<std::string, std::string>* out) {
  CASK_TRY(ExpectObject(j, path));
  std::map<std::string, std::string> m;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it->is_string()) {
      return Invalid(MapKey(path, it.key()), "expected a string, got " + Describe(*it));
    }
    m.emplace(it.key(), it->get_ref<const std::string&>());
  }
  *out = std::move(m);
  return Ok();
}

Status Read(const Json& j, const std::string& path, User* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "uid", &out->uid));
  CASK_TRY(Get(j, path, "gid", &out->gid));
  CASK_TRY(Get(j, path, "umask", &out->umask));
  CASK_TRY(Get(j, path, "additionalGids", &out->additional_gids));
  return Ok();
}

Status Read(const Json& j, const std::string& path, ConsoleSize* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "height", &out->height));
  CASK_TRY(Get(j, path, "width", &out->width));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Capabilities* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "bounding", &out->bounding));
  CASK_TRY(Get(j, path, "effective", &out->effective));
  CASK_TRY(Get(j, path, "inheritable", &out->inheritable));
  CASK_TRY(Get(j, path, "permitted", &out->permitted));
  CASK_TRY(Get(j, path, "ambient", &out->ambient));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Rlimit* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "type", &out->type));
  CASK_TRY(Get(j, path, "hard", &out->hard));
  CASK_TRY(Get(j, path, "soft", &out->soft));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Process* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "terminal", &out->terminal));
  CASK_TRY(Get(j, path, "consoleSize", &out->console_size));
  CASK_TRY(Get(j, path, "user", &out->user));
  CASK_TRY(Get(j, path, "args", &out->args));
  CASK_TRY(Get(j, path, "env", &out->env));
  CASK_TRY(Get(j, path, "cwd", &out->cwd));
  CASK_TRY(Get(j, path, "capabilities", &out->capabilities));
  CASK_TRY(Get(j, path, "rlimits", &out->rlimits));
  CASK_TRY(Get(j, path, "noNewPrivileges", &out->no_new_privileges));
  CASK_TRY(Get(j, path, "oomScoreAdj", &out->oom_score_adj));
  CASK_TRY(Get(j, path, "apparmorProfile", &out->apparmor_profile));
  CASK_TRY(Get(j, path, "selinuxLabel", &out->selinux_label));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Root* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "path", &out->path));
  CASK_TRY(Get(j, path, "readonly", &out->readonly));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Mount* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "destination", &out->destination));
  CASK_TRY(Get(j, path, "type", &out->type));
  CASK_TRY(Get(j, path, "source", &out->source));
  CASK_TRY(Get(j, path, "options", &out->options));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Namespace* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "type", &out->type));
  CASK_TRY(Get(j, path, "path", &out->path));
  return Ok();
}

Status Read(const Json& j, const std::string& path, IdMapping* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "containerID", &out->container_id));
  CASK_TRY(Get(j, path, "hostID", &out->host_id));
  CASK_TRY(Get(j, path, "size", &out->size));
  return Ok();
}

Status Read(const Json& j, const std::string& path, DeviceCgroup* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "allow", &out->allow));
  CASK_TRY(Get(j, path, "type", &out->type));
  CASK_TRY(Get(j, path, "major", &out->major));
  CASK_TRY(Get(j, path, "minor", &out->minor));
  CASK_TRY(Get(j, path, "access", &out->access));
  return Ok();
}

Status Read(const Json& j, const std::string& path, MemoryResources* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "limit", &out->limit));
  CASK_TRY(Get(j, path, "reservation", &out->reservation));
  CASK_TRY(Get(j, path, "swap", &out->swap));
  CASK_TRY(Get(j, path, "kernel", &out->kernel));
  CASK_TRY(Get(j, path, "kernelTCP", &out->kernel_tcp));
  CASK_TRY(Get(j, path, "swappiness", &out->swappiness));
  CASK_TRY(Get(j, path, "disableOOMKiller", &out->disable_oom_killer));
  return Ok();
}

Status Read(const Json& j, const std::string& path, CpuResources* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "shares", &out->shares));
  CASK_TRY(Get(j, path, "quota", &out->quota));
  CASK_TRY(Get(j, path, "period", &out->period));
  CASK_TRY(Get(j, path, "realtimeRuntime", &out->realtime_runtime));
  CASK_TRY(Get(j, path, "realtimePeriod", &out->realtime_period));
  CASK_TRY(Get(j, path, "cpus", &out->cpus));
  CASK_TRY(Get(j, path, "mems", &out->mems));
  return Ok();
}

Status Read(const Json& j, const std::string& path, PidsResources* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "limit", &out->limit));
  return Ok();
}

Status Read(const Json& j, const std::string& path, BlockIoResources* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "weight", &out->weight));
  return Ok();
}

Status Read(const Json& j, const std::string& path, HugepageLimit* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "pageSize", &out->page_size));
  CASK_TRY(Get(j, path, "limit", &out->limit));
  return Ok();
}

Status Read(const Json& j, const std::string& path, LinuxResources* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "devices", &out->devices));
  CASK_TRY(Get(j, path, "memory", &out->memory));
  CASK_TRY(Get(j, path, "cpu", &out->cpu));
  CASK_TRY(Get(j, path, "pids", &out->pids));
  CASK_TRY(Get(j, path, "blockIO", &out->block_io));
  CASK_TRY(Get(j, path, "hugepageLimits", &out->hugepage_limits));
  CASK_TRY(Get(j, path, "unified", &out->unified));
  return Ok();
}

Status Read(const Json& j, const std::string& path, SeccompArg* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "index", &out->index));
  CASK_TRY(Get(j, path, "value", &out->value));
  CASK_TRY(Get(j, path, "valueTwo", &out->value_two));
  CASK_TRY(Get(j, path, "op", &out->op));
  return Ok();
}

Status Read(const Json& j, const std::string& path, SeccompSyscall* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "names", &out->names));
  CASK_TRY(Get(j, path, "action", &out->action));
  CASK_TRY(Get(j, path, "errnoRet", &out->errno_ret));
  CASK_TRY(Get(j, path, "args", &out->args));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Seccomp* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "defaultAction", &out->default_action));
  CASK_TRY(Get(j, path, "defaultErrnoRet", &out->default_errno_ret));
  CASK_TRY(Get(j, path, "architectures", &out->architectures));
  CASK_TRY(Get(j, path, "flags", &out->flags));
  CASK_TRY(Get(j, path, "syscalls", &out->syscalls));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Device* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "path", &out->path));
  CASK_TRY(Get(j, path, "type", &out->type));
  CASK_TRY(Get(j, path, "major", &out->major));
  CASK_TRY(Get(j, path, "minor", &out->minor));
  CASK_TRY(Get(j, path, "fileMode", &out->file_mode));
  CASK_TRY(Get(j, path, "uid", &out->uid));
  CASK_TRY(Get(j, path, "gid", &out->gid));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Linux* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "namespaces", &out->namespaces));
  CASK_TRY(Get(j, path, "uidMappings", &out->uid_mappings));
  CASK_TRY(Get(j, path, "gidMappings", &out->gid_mappings));
  CASK_TRY(Get(j, path, "resources", &out->resources));
  CASK_TRY(Get(j, path, "cgroupsPath", &out->cgroups_path));
  CASK_TRY(Get(j, path, "sysctl", &out->sysctl));
  CASK_TRY(Get(j, path, "seccomp", &out->seccomp));
  CASK_TRY(Get(j, path, "devices", &out->devices));
  CASK_TRY(Get(j, path, "maskedPaths", &out->masked_paths));
  CASK_TRY(Get(j, path, "readonlyPaths", &out->readonly_paths));
  CASK_TRY(Get(j, path, "rootfsPropagation", &out->rootfs_propagation));
  CASK_TRY(Get(j, path, "mountLabel", &out->mount_label));
  return Ok();
}

Status Read(const Json& j, const std::string& path, Spec* out) {
  CASK_TRY(ExpectObject(j, path));
  CASK_TRY(Get(j, path, "ociVersion", &out->oci_version));
  CASK_TRY(Get(j, path, "process", &out->process));
  CASK_TRY(Get(j, path, "root", &out->root));
  CASK_TRY(Get(j, path, "hostname", &out->hostname));
  CASK_TRY(Get(j, path, "domainname", &out->domainname));
  CASK_TRY(Get(j, path, "mounts", &out->mounts));
  CASK_TRY(Get(j, path, "linux", &out->linux));
  CASK_TRY(Get(j, path, "annotations", &out->annotations));
  return Ok();
}

// Rejects documents nested deeper than kMaxDepth without parsing them.
// Brackets inside strings do not count; malformed input is left to the
// parser to report.
Status CheckDepth(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxDepth) {
        return Error::InvalidArgument("invalid JSON: nested deeper than " +
                                      std::to_string(kMaxDepth) + " levels");
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return Ok();
}

Result<Json> ParseJson(std::string_view text) {
  CASK_TRY(CheckDepth(text));
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1,
    // column 2: ..."; keep the part after the bracketed id.
    std::string_view what = e.what();
    if (auto pos = what.find("] "); pos != std::string_view::npos) what.remove_prefix(pos + 2);
    // Drop "; last read: '<input bytes>'": it echoes untrusted bytes (maybe
    // invalid UTF-8) into an error that travels in protobuf strings.
    if (auto pos = what.find("; last read:"); pos != std::string_view::npos) what = what.substr(0, pos);
    return Error::InvalidArgument("invalid JSON: " + std::string(what));
  }
}

template <typename T>
Result<T> ParseAs(std::string_view text, const std::string& path) {
  CASK_ASSIGN_OR_RETURN(Json j, ParseJson(text));
  T out{};
  CASK_TRY(Read(j, path, &out));
  return out;
}

}  // namespace

Result<Spec> ParseSpec(std::string_view json) {
  CASK_ASSIGN_OR_RETURN(Spec spec, ParseAs<Spec>(json, ""));
  CASK_TRY(Validate(spec));
  return spec;
}

Result<Process> ParseProcess(std::string_view json) {
  CASK_ASSIGN_OR_RETURN(Process p, ParseAs<Process>(json, "process"));
  CASK_TRY(ValidateProcess(p, "process"));
  return p;
}

Result<LinuxResources> ParseLinuxResources(std::string_view json) {
  CASK_ASSIGN_OR_RETURN(LinuxResources r, ParseAs<LinuxResources>(json, "resources"));
  CASK_TRY(ValidateLinuxResources(r, "resources"));
  return r;
}

}  // namespace cask::oci
