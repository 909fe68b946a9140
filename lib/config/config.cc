#include "lib/config/config.h"

#include <array>
#include <initializer_list>
#include <string>

#include <toml++/toml.h>

#include "lib/base/fs.h"
#include "lib/base/quote.h"

namespace cask::config {
namespace {

constexpr const char* kBuiltinSource = "(built-in defaults)";

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string TypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "an unsupported value";
  }
}

// Reads typed values out of TOML nodes; every error names the origin file
// and the dotted key.
class Reader {
 public:
  explicit Reader(const std::string& origin) : origin_(origin) {}

  Error Bad(std::string_view key, std::string_view msg) const {
    return Error::InvalidArgument(origin_ + ": " + std::string(key) + ": " + std::string(msg));
  }

  Status String(const toml::node& n, std::string_view key, std::string* out) const {
    const auto* v = n.as_string();
    if (v == nullptr) return Bad(key, "expected a string, got " + TypeName(n));
    for (char c : v->get()) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return Bad(key, "must not contain control characters");
      }
    }
    *out = v->get();
    return Ok();
  }

  Status AbsolutePath(const toml::node& n, std::string_view key, std::string* out) const {
    std::string s;
    CASK_TRY(String(n, key, &s));
    if (s.empty() || s[0] != '/') return Bad(key, "must be an absolute path, got " + Quote(s));
    *out = std::move(s);
    return Ok();
  }

  // One of `words`; returns its index.
  Result<size_t> Word(const toml::node& n, std::string_view key,
                      std::initializer_list<std::string_view> words) const {
    std::string s;
    CASK_TRY(String(n, key, &s));
    size_t i = 0;
    std::string list;
    for (std::string_view w : words) {
      if (s == w) return i;
      list += (i == 0 ? "" : ", ") + std::string(w);
      ++i;
    }
    return Bad(key, "must be one of " + list + ", got " + Quote(s));
  }

  Status Uint(const toml::node& n, std::string_view key, uint32_t min, uint32_t max,
              uint32_t* out) const {
    const auto* v = n.as_integer();
    if (v == nullptr) return Bad(key, "expected an integer, got " + TypeName(n));
    int64_t x = v->get();
    if (x < static_cast<int64_t>(min) || x > static_cast<int64_t>(max)) {
      return Bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                          ", got " + std::to_string(x));
    }
    *out = static_cast<uint32_t>(x);
    return Ok();
  }

  Status Bool(const toml::node& n, std::string_view key, bool* out) const {
    const auto* v = n.as_boolean();
    if (v == nullptr) return Bad(key, "expected a boolean, got " + TypeName(n));
    *out = v->get();
    return Ok();
  }

 private:
  const std::string& origin_;
};

Status ReadHypervisor(const toml::table& t, const Reader& r, HypervisorConfig* h) {
  for (auto&& [k, node] : t) {
    const std::string_view name = k.str();
    const std::string key = "hypervisor." + std::string(name);
    if (name == "path") {
      CASK_TRY(r.AbsolutePath(node, key, &h->path));
    } else if (name == "kernel") {
      CASK_TRY(r.AbsolutePath(node, key, &h->kernel));
    } else if (name == "initrd") {
      CASK_TRY(r.AbsolutePath(node, key, &h->initrd));
    } else if (name == "machine_type") {
      CASK_ASSIGN_OR_RETURN(size_t i, r.Word(node, key, {"microvm", "q35", "pc"}));
      h->machine_type = std::array{"microvm", "q35", "pc"}[i];
    } else if (name == "accel") {
      CASK_ASSIGN_OR_RETURN(size_t i, r.Word(node, key, {"auto", "kvm", "tcg"}));
      h->accel = std::array{Accel::kAuto, Accel::kKvm, Accel::kTcg}[i];
    } else if (name == "vcpus") {
      CASK_TRY(r.Uint(node, key, kMinVcpus, kMaxVcpus, &h->vcpus));
    } else if (name == "memory_mib") {
      CASK_TRY(r.Uint(node, key, kMinMemoryMib, kMaxMemoryMib, &h->memory_mib));
    } else if (name == "max_vcpus") {
      CASK_TRY(r.Uint(node, key, kMinVcpus, kMaxVcpus, &h->max_vcpus));
    } else if (name == "max_memory_mib") {
      CASK_TRY(r.Uint(node, key, kMinMemoryMib, kMaxMemoryMib, &h->max_memory_mib));
    } else if (name == "kernel_params") {
      CASK_TRY(r.String(node, key, &h->kernel_params));
    } else if (name == "virtiofsd_path") {
      CASK_TRY(r.AbsolutePath(node, key, &h->virtiofsd_path));
    } else if (name == "virtiofs_cache") {
      CASK_ASSIGN_OR_RETURN(size_t i, r.Word(node, key, {"auto", "always", "none"}));
      h->virtiofs_cache = std::array{"auto", "always", "none"}[i];
    } else if (name == "tcg_tb_size_mib") {
      CASK_TRY(r.Uint(node, key, 0, kMaxTcgTbSizeMib, &h->tcg_tb_size_mib));
    } else if (name == "free_page_reporting") {
      CASK_TRY(r.Bool(node, key, &h->free_page_reporting));
    } else if (name == "release_boot_files") {
      CASK_TRY(r.Bool(node, key, &h->release_boot_files));
    } else if (name == "runas") {
      CASK_TRY(r.String(node, key, &h->runas));
      if (h->runas.empty()) return r.Bad(key, "must not be empty (\"none\" keeps QEMU root)");
    } else {
      return r.Bad(key, "unknown key");
    }
  }
  // A maximum below the base size: an error when the file says so, else
  // the default maximum follows the base.
  if (h->max_vcpus < h->vcpus) {
    if (t.contains("max_vcpus"))
      return r.Bad("hypervisor.max_vcpus", "must be at least hypervisor.vcpus (" + std::to_string(h->vcpus) + ")");
    h->max_vcpus = h->vcpus;
  }
  if (h->max_memory_mib < h->memory_mib) {
    if (t.contains("max_memory_mib"))
      return r.Bad("hypervisor.max_memory_mib",
                   "must be at least hypervisor.memory_mib (" + std::to_string(h->memory_mib) + ")");
    h->max_memory_mib = h->memory_mib;
  }
  return Ok();
}

Status ReadAgent(const toml::table& t, const Reader& r, AgentConfig* a) {
  for (auto&& [k, node] : t) {
    const std::string_view name = k.str();
    const std::string key = "agent." + std::string(name);
    if (name == "channel") {
      CASK_ASSIGN_OR_RETURN(size_t i, r.Word(node, key, {"auto", "vsock", "serial"}));
      a->channel = std::array{AgentChannel::kAuto, AgentChannel::kVsock, AgentChannel::kSerial}[i];
    } else if (name == "connect_timeout_ms") {
      CASK_TRY(r.Uint(node, key, kMinConnectTimeoutMs, kMaxConnectTimeoutMs, &a->connect_timeout_ms));
    } else if (name == "teardown_timeout_ms") {
      CASK_TRY(r.Uint(node, key, kMinTeardownTimeoutMs, kMaxTeardownTimeoutMs, &a->teardown_timeout_ms));
    } else {
      return r.Bad(key, "unknown key");
    }
  }
  return Ok();
}

Status ReadRuntime(const toml::table& t, const Reader& r, RuntimeConfig* rt) {
  for (auto&& [k, node] : t) {
    const std::string_view name = k.str();
    const std::string key = "runtime." + std::string(name);
    if (name == "debug") {
      CASK_TRY(r.Bool(node, key, &rt->debug));
    } else if (name == "state_dir") {
      CASK_TRY(r.AbsolutePath(node, key, &rt->state_dir));
    } else if (name == "sandbox_cgroup") {
      CASK_TRY(r.Bool(node, key, &rt->sandbox_cgroup));
    } else if (name == "cgroup_parent") {
      CASK_TRY(r.String(node, key, &rt->cgroup_parent));
      std::string_view rel = rt->cgroup_parent;
      if (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
      bool ok = !rel.empty() && rel.back() != '/' && rel.find("//") == std::string_view::npos;
      for (char c : rel)
        ok &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || c == '/';
      ok &= rel != "." && rel != ".." && rel.find("./") == std::string_view::npos && rel.find("/.") == std::string_view::npos &&
            rel.substr(0, 2) != "..";
      if (!ok) return r.Bad(key, "must be cgroup names of [A-Za-z0-9_.-] separated by '/', got " + Quote(rt->cgroup_parent));
    } else if (name == "cgroup_shim") {
      CASK_TRY(r.Bool(node, key, &rt->cgroup_shim));
    } else if (name == "cgroup_memory_overhead_mib") {
      CASK_TRY(r.Uint(node, key, 0, kMaxCgroupOverheadMib, &rt->cgroup_memory_overhead_mib));
    } else if (name == "cgroup_pids_max") {
      CASK_TRY(r.Uint(node, key, 0, kMaxCgroupPids, &rt->cgroup_pids_max));
    } else if (name == "default_seccomp") {
      CASK_TRY(r.Bool(node, key, &rt->default_seccomp));
    } else {
      return r.Bad(key, "unknown key");
    }
  }
  return Ok();
}

Status ReadPool(const toml::table& t, const Reader& r, PoolConfig* p) {
  for (auto&& [k, node] : t) {
    const std::string_view name = k.str();
    const std::string key = "pool." + std::string(name);
    if (name == "enabled") {
      CASK_TRY(r.Bool(node, key, &p->enabled));
    } else if (name == "size") {
      CASK_TRY(r.Uint(node, key, 0, kMaxPoolSize, &p->size));
    } else if (name == "socket") {
      CASK_TRY(r.AbsolutePath(node, key, &p->socket));
      if (p->socket.size() > 100) return r.Bad(key, "longer than 100 bytes (a unix socket path)");
    } else if (name == "state_dir") {
      CASK_TRY(r.AbsolutePath(node, key, &p->state_dir));
      if (p->state_dir.size() > 60) return r.Bad(key, "longer than 60 bytes (VM socket paths live below it)");
    } else if (name == "cgroup_parent") {
      CASK_TRY(r.String(node, key, &p->cgroup_parent));
      std::string_view rel = p->cgroup_parent;
      if (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
      bool ok = !rel.empty() && rel.back() != '/' && rel.find("//") == std::string_view::npos;
      for (char c : rel)
        ok &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || c == '/';
      ok &= rel.find("..") == std::string_view::npos && rel.find("/.") == std::string_view::npos && rel.front() != '.';
      if (!ok) return r.Bad(key, "must be cgroup names of [A-Za-z0-9_.-] separated by '/', got " + Quote(p->cgroup_parent));
    } else if (name == "idle_memory_mib") {
      CASK_TRY(r.Uint(node, key, 0, kMaxPoolSize * kMaxMemoryMib, &p->idle_memory_mib));
    } else if (name == "autostart") {
      CASK_TRY(r.Bool(node, key, &p->autostart));
    } else if (name == "runtime_path") {
      CASK_TRY(r.AbsolutePath(node, key, &p->runtime_path));
    } else {
      return r.Bad(key, "unknown key");
    }
  }
  return Ok();
}

}  // namespace

std::string_view AccelName(Accel a) {
  switch (a) {
    case Accel::kAuto: return "auto";
    case Accel::kKvm: return "kvm";
    case Accel::kTcg: return "tcg";
  }
  return "auto";
}

std::string_view ChannelName(AgentChannel c) {
  switch (c) {
    case AgentChannel::kAuto: return "auto";
    case AgentChannel::kVsock: return "vsock";
    case AgentChannel::kSerial: return "serial";
  }
  return "auto";
}

Result<Config> Parse(std::string_view text, const std::string& origin) {
  toml::table doc;
  try {
    doc = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Error::InvalidArgument(origin + ": line " + std::to_string(where.line) + ", column " +
                                  std::to_string(where.column) + ": " +
                                  std::string(e.description()));
  }
  Reader r(origin);
  Config c;
  c.source = origin;
  for (auto&& [k, node] : doc) {
    const std::string_view name = k.str();
    const toml::table* t = node.as_table();
    if (name != "hypervisor" && name != "agent" && name != "runtime" && name != "pool") {
      return r.Bad(name, t != nullptr ? "unknown table (known: hypervisor, agent, runtime, pool)"
                                      : "unknown key (keys belong in [hypervisor], [agent], [runtime] or [pool])");
    }
    if (t == nullptr) return r.Bad(name, "expected a table, got " + TypeName(node));
    if (name == "hypervisor") {
      CASK_TRY(ReadHypervisor(*t, r, &c.hypervisor));
    } else if (name == "agent") {
      CASK_TRY(ReadAgent(*t, r, &c.agent));
    } else if (name == "pool") {
      CASK_TRY(ReadPool(*t, r, &c.pool));
    } else {
      CASK_TRY(ReadRuntime(*t, r, &c.runtime));
    }
  }
  return c;
}

Result<Config> LoadFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    Error e = std::move(text).error();
    if (e.code() == Code::kNotFound) {
      return Error::NotFound("configuration file " + path + " not found");
    }
    return std::move(e).Wrap("reading configuration");
  }
  return Parse(*text, path);
}

Result<Config> LoadDefault() {
  auto c = LoadFile(kDefaultPath);
  if (!c.ok() && c.error().code() == Code::kNotFound) {
    Config defaults;
    defaults.source = kBuiltinSource;
    return defaults;
  }
  return c;
}

std::string ToToml(const Config& c) {
  const HypervisorConfig& h = c.hypervisor;
  std::string s;
  s += "# cask configuration, from " + (c.source.empty() ? std::string(kBuiltinSource) : c.source) + "\n";
  s += "\n[hypervisor]\n";
  s += "path = " + DoubleQuoted(h.path) + "\n";
  s += "kernel = " + DoubleQuoted(h.kernel) + "\n";
  s += "initrd = " + DoubleQuoted(h.initrd) + "\n";
  s += "machine_type = " + DoubleQuoted(h.machine_type) + "\n";
  s += "accel = " + DoubleQuoted(AccelName(h.accel)) + "\n";
  s += "vcpus = " + std::to_string(h.vcpus) + "\n";
  s += "memory_mib = " + std::to_string(h.memory_mib) + "\n";
  s += "max_vcpus = " + std::to_string(h.max_vcpus) + "\n";
  s += "max_memory_mib = " + std::to_string(h.max_memory_mib) + "\n";
  s += "kernel_params = " + DoubleQuoted(h.kernel_params) + "\n";
  s += "virtiofsd_path = " + DoubleQuoted(h.virtiofsd_path) + "\n";
  s += "virtiofs_cache = " + DoubleQuoted(h.virtiofs_cache) + "\n";
  s += "tcg_tb_size_mib = " + std::to_string(h.tcg_tb_size_mib) + "\n";
  s += std::string("free_page_reporting = ") + (h.free_page_reporting ? "true" : "false") + "\n";
  s += std::string("release_boot_files = ") + (h.release_boot_files ? "true" : "false") + "\n";
  s += "runas = " + DoubleQuoted(h.runas) + "\n";
  s += "\n[agent]\n";
  s += "channel = " + DoubleQuoted(ChannelName(c.agent.channel)) + "\n";
  s += "connect_timeout_ms = " + std::to_string(c.agent.connect_timeout_ms) + "\n";
  s += "teardown_timeout_ms = " + std::to_string(c.agent.teardown_timeout_ms) + "\n";
  s += "\n[runtime]\n";
  s += std::string("debug = ") + (c.runtime.debug ? "true" : "false") + "\n";
  s += "state_dir = " + DoubleQuoted(c.runtime.state_dir) + "\n";
  s += std::string("sandbox_cgroup = ") + (c.runtime.sandbox_cgroup ? "true" : "false") + "\n";
  s += "cgroup_parent = " + DoubleQuoted(c.runtime.cgroup_parent) + "\n";
  s += std::string("cgroup_shim = ") + (c.runtime.cgroup_shim ? "true" : "false") + "\n";
  s += "cgroup_memory_overhead_mib = " + std::to_string(c.runtime.cgroup_memory_overhead_mib) + "\n";
  s += "cgroup_pids_max = " + std::to_string(c.runtime.cgroup_pids_max) + "\n";
  s += std::string("default_seccomp = ") + (c.runtime.default_seccomp ? "true" : "false") + "\n";
  const PoolConfig& p = c.pool;
  s += "\n[pool]\n";
  s += std::string("enabled = ") + (p.enabled ? "true" : "false") + "\n";
  s += "size = " + std::to_string(p.size) + "\n";
  s += "socket = " + DoubleQuoted(p.socket) + "\n";
  s += "state_dir = " + DoubleQuoted(p.state_dir) + "\n";
  s += "cgroup_parent = " + DoubleQuoted(p.cgroup_parent) + "\n";
  s += "idle_memory_mib = " + std::to_string(p.idle_memory_mib) + "\n";
  s += std::string("autostart = ") + (p.autostart ? "true" : "false") + "\n";
  s += "runtime_path = " + DoubleQuoted(p.runtime_path) + "\n";
  return s;
}

}  // namespace cask::config
