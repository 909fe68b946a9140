#include "lib/hypervisor/host_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

#include "lib/base/fs.h"
#include "lib/sys/mountinfo.h"
#include "lib/sys/pidfd.h"

namespace cask::hypervisor {
namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup/";

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    size_t i = s.find(sep);
    out.push_back(s.substr(0, i));
    if (i == std::string_view::npos) break;
    s.remove_prefix(i + 1);
  }
  return out;
}

bool HasWord(std::string_view list, std::string_view word, char sep) {
  for (auto w : Split(list, sep))
    if (w == word) return true;
  return false;
}

Status WriteString(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return Error::Sys(errno, "open " + path);
  ssize_t n = ::write(fd.get(), value.data(), value.size());
  if (n < 0) return Error::Sys(errno, "write \"" + std::string(value) + "\" to " + path);
  if (static_cast<size_t>(n) != value.size()) return Error::Internal("short write to " + path);
  return Ok();
}

Result<std::vector<pid_t>> ReadProcs(const std::string& dir) {
  CASK_ASSIGN_OR_RETURN(std::string text, ReadFile(JoinPath(dir, "cgroup.procs")));
  std::vector<pid_t> out;
  for (auto line : Split(text, '\n')) {
    if (line.empty()) continue;
    pid_t pid = 0;
    for (char c : line) {
      if (c < '0' || c > '9') return Error::Internal("unexpected line in " + dir + "/cgroup.procs");
      pid = pid * 10 + (c - '0');
    }
    out.push_back(pid);
  }
  return out;
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

bool IsMember(const std::string& dir, pid_t pid) {
  auto pids = ReadProcs(dir);
  return pids.ok() && std::find(pids->begin(), pids->end(), pid) != pids->end();
}

// SIGKILL `pid` if, once pinned by a pidfd, it is still in `dir`: a pid
// read from cgroup.procs may have exited and been reused in between.
void KillMember(const std::string& dir, pid_t pid) {
  auto pidfd = sys::Pidfd::Open(pid);
  if (!pidfd.ok()) return;  // gone
  if (!IsMember(dir, pid)) return;
  (void)pidfd->Signal(SIGKILL);
}

Status ApplyLimitsV2(const std::string& dir, const CgroupLimits& l) {
  if (l.memory_bytes > 0) {
    CASK_TRY(WriteString(JoinPath(dir, "memory.max"), std::to_string(l.memory_bytes)));
    // Swap would let the pod exceed its limit on hosts that have it.
    if (PathExists(JoinPath(dir, "memory.swap.max"))) CASK_TRY(WriteString(JoinPath(dir, "memory.swap.max"), "0"));
  }
  if (l.cpu_quota_us > 0)
    CASK_TRY(WriteString(JoinPath(dir, "cpu.max"),
                         std::to_string(l.cpu_quota_us) + " " + std::to_string(l.cpu_period_us)));
  if (l.pids_max > 0) CASK_TRY(WriteString(JoinPath(dir, "pids.max"), std::to_string(l.pids_max)));
  return Ok();
}

Status ApplyLimitV1(const std::string& dir, const std::string& controller, const CgroupLimits& l) {
  if (controller == "memory" && l.memory_bytes > 0)
    return WriteString(JoinPath(dir, "memory.limit_in_bytes"), std::to_string(l.memory_bytes));
  if (controller == "cpu" && l.cpu_quota_us > 0) {
    CASK_TRY(WriteString(JoinPath(dir, "cpu.cfs_period_us"), std::to_string(l.cpu_period_us)));
    return WriteString(JoinPath(dir, "cpu.cfs_quota_us"), std::to_string(l.cpu_quota_us));
  }
  if (controller == "pids" && l.pids_max > 0) return WriteString(JoinPath(dir, "pids.max"), std::to_string(l.pids_max));
  return Ok();
}

// mkdir -p of `rel` below `mount`, and for v2 enables the controllers in
// each level's subtree_control so that the leaf gets them.
Status MakeParents(const std::string& mount, std::string_view rel, bool enable_v2_controllers) {
  std::string path = mount;
  for (auto comp : Split(rel, '/')) {
    if (enable_v2_controllers) {
      auto avail = ReadFile(JoinPath(path, "cgroup.controllers"));
      std::string want;
      for (const char* c : {"memory", "cpu", "pids"})
        if (avail.ok() && HasWord(TrimRight(*avail), c, ' ')) want += std::string(want.empty() ? "" : " ") + "+" + c;
      if (!want.empty()) CASK_TRY(WriteString(JoinPath(path, "cgroup.subtree_control"), want));
    }
    path = JoinPath(path, std::string(comp));
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + path);
  }
  return Ok();
}

}  // namespace

CgroupLayout ParseCgroupLayout(std::string_view mountinfo, std::string_view unified_controllers_text) {
  CgroupLayout l;
  for (const sys::MountInfo& m : sys::ParseMountInfo(mountinfo)) {
    if (m.fstype == "cgroup2") {
      if (l.unified.empty()) l.unified = m.mount_point;
    } else if (m.fstype == "cgroup") {
      for (const char* c : {"memory", "cpu", "pids"}) {
        std::string* slot = std::string_view(c) == "memory" ? &l.memory : std::string_view(c) == "cpu" ? &l.cpu : &l.pids;
        if (slot->empty() && HasWord(m.super_options, c, ',')) *slot = m.mount_point;
      }
    }
  }
  if (!l.unified.empty()) {
    std::string_view t = unified_controllers_text;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.remove_suffix(1);
    l.unified_controllers = HasWord(t, "memory", ' ') && HasWord(t, "cpu", ' ') && HasWord(t, "pids", ' ');
  }
  return l;
}

Result<CgroupLayout> DetectCgroupLayout() {
  CASK_ASSIGN_OR_RETURN(std::string info, ReadFile("/proc/self/mountinfo"));
  CgroupLayout l = ParseCgroupLayout(info, "");
  if (!l.unified.empty()) {
    auto ctrl = ReadFile(JoinPath(l.unified, "cgroup.controllers"));
    l = ParseCgroupLayout(info, ctrl.ok() ? *ctrl : "");
  }
  return l;
}

Status ValidateCgroupName(std::string_view name, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return Error::InvalidArgument(std::string(what) + ": " + std::string(why) + ", got \"" + std::string(name) + "\"");
  };
  if (name.empty()) return bad("must not be empty");
  if (name.size() > 255) return bad("longer than 255 bytes");
  for (auto comp : Split(name, '/')) {
    if (comp.empty() || comp == "." || comp == "..")
      return bad("must be '/'-separated names, without empty, \".\" or \"..\" components");
    for (char c : comp) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                c == '.' || c == '-';
      if (!ok) return bad("may contain only letters, digits, '_', '.', '-' and '/'");
    }
  }
  return Ok();
}

Result<std::string> SelfCgroupPath(std::string_view text, std::string_view controller) {
  for (auto line : Split(text, '\n')) {
    // hierarchy-id:controller-list:path
    size_t a = line.find(':');
    if (a == std::string_view::npos) continue;
    size_t b = line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    std::string_view id = line.substr(0, a), ctrls = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    bool match = controller.empty() ? (id == "0" && ctrls.empty()) : HasWord(ctrls, controller, ',');
    if (match) return std::string(path);
  }
  return Error::NotFound("no cgroup line for " + std::string(controller.empty() ? "cgroup2" : controller));
}

HostCgroup::~HostCgroup() {
  if (valid()) (void)Remove(std::chrono::milliseconds(2000));
}

HostCgroup::HostCgroup(HostCgroup&& o) noexcept : dirs_(std::move(o.dirs_)) { o.dirs_.clear(); }

HostCgroup& HostCgroup::operator=(HostCgroup&& o) noexcept {
  if (this != &o) {
    if (valid()) (void)Remove(std::chrono::milliseconds(2000));
    dirs_ = std::move(o.dirs_);
    o.dirs_.clear();
  }
  return *this;
}

std::vector<std::string> HostCgroup::dirs() const {
  std::vector<std::string> out;
  for (const auto& d : dirs_) out.push_back(d.path);
  return out;
}

Result<HostCgroup> HostCgroup::Create(const CgroupLayout& layout, std::string_view parent, std::string_view name,
                                      const CgroupLimits& limits) {
  bool absolute = !parent.empty() && parent.front() == '/';
  std::string_view parent_rel = absolute ? parent.substr(1) : parent;
  CASK_TRY(ValidateCgroupName(parent_rel, "cgroup parent"));
  CASK_TRY(ValidateCgroupName(name, "cgroup name"));
  if (name.find('/') != std::string_view::npos)
    return Error::InvalidArgument("cgroup name must be a single component, got \"" + std::string(name) + "\"");
  if (!layout.usable())
    return Error::FailedPrecondition(
        "no usable cgroup hierarchy: need cgroup v2 with the memory, cpu and pids controllers, or the v1 memory, "
        "cpu and pids hierarchies");
  std::string self_cgroup;
  if (!absolute) {
    CASK_ASSIGN_OR_RETURN(self_cgroup, ReadFile("/proc/self/cgroup"));
  }
  std::vector<std::pair<std::string, std::string>> where;  // (mount, controller)
  if (!layout.unified.empty()) where.emplace_back(layout.unified, "");
  if (layout.v1())
    for (const auto& [m, c] : {std::pair{layout.memory, "memory"}, {layout.cpu, "cpu"}, {layout.pids, "pids"}})
      where.emplace_back(m, c);

  HostCgroup cg;  // its destructor unwinds a partial create
  for (const auto& [mount, controller] : where) {
    // v1 hierarchies co-mounted (cpu,cpuacct on one mount) need one directory.
    bool dup = false;
    for (const auto& d : cg.dirs_) dup |= d.mount == mount;
    if (dup) continue;
    bool v2_resources = controller.empty() && layout.v2();
    // A relative parent nests below the caller's own cgroup in this
    // hierarchy, so the limits the caller lives under still apply.
    std::string base = mount;
    if (!absolute) {
      CASK_ASSIGN_OR_RETURN(std::string self, SelfCgroupPath(self_cgroup, controller));
      base = JoinPath(mount, self);
    }
    Status made = MakeParents(base, parent_rel, v2_resources);
    if (!made.ok()) {
      Error e = std::move(made).error();
      if (v2_resources && e.sys_errno() == EBUSY)
        e.Wrap("the cgroup " + base + " has processes, so cgroup v2 cannot enable controllers below it; set "
               "runtime.cgroup_parent to an absolute path such as \"/cask\"");
      return std::move(e).Wrap("create cgroup parent " + std::string(parent));
    }
    std::string path = JoinPath(JoinPath(base, std::string(parent_rel)), std::string(name));
    if (::mkdir(path.c_str(), 0755) != 0) {
      // An empty leftover (its pod is gone) is removed and made again; one
      // with members belongs to a live pod.
      if (errno != EEXIST || ::rmdir(path.c_str()) != 0 || ::mkdir(path.c_str(), 0755) != 0) {
        if (errno == EEXIST || errno == EBUSY) return Error::AlreadyExists("cgroup " + path + " already exists and is in use");
        return Error::Sys(errno, "mkdir " + path);
      }
    }
    cg.dirs_.push_back(Dir{path, mount, controller, "", true});
    if (v2_resources) {
      CASK_TRY_CTX(ApplyLimitsV2(path, limits), "set limits of cgroup " + path);
    } else if (!controller.empty()) {
      CASK_TRY_CTX(ApplyLimitV1(path, controller, limits), "set limits of cgroup " + path);
    }
  }
  return cg;
}

Result<HostCgroup> HostCgroup::Adopt(const std::vector<std::string>& dirs) {
  HostCgroup cg;
  for (const auto& d : dirs) {
    if (d.rfind(kCgroupRoot, 0) != 0 || d.find("/../") != std::string::npos || d.find("/./") != std::string::npos ||
        d.find('\n') != std::string::npos)
      return Error::InvalidArgument("not a cgroup directory below " + std::string(kCgroupRoot) + ": \"" + d + "\"");
    if (!PathExists(JoinPath(d, "cgroup.procs"))) continue;
    cg.dirs_.push_back(Dir{d, "", "", "", false});
  }
  return cg;
}

Result<std::vector<UniqueFd>> HostCgroup::OpenProcsFiles() const {
  std::vector<UniqueFd> out;
  for (const auto& d : dirs_) {
    std::string p = JoinPath(d.path, "cgroup.procs");
    UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return Error::Sys(errno, "open " + p);
    out.push_back(std::move(fd));
  }
  return out;
}

Status HostCgroup::Add(pid_t pid) {
  bool self = pid == ::getpid();
  std::string self_cgroup;
  if (self) {
    CASK_ASSIGN_OR_RETURN(self_cgroup, ReadFile("/proc/self/cgroup"));
  }
  for (auto& d : dirs_) {
    if (self && !d.mount.empty() && d.origin.empty()) {
      auto rel = SelfCgroupPath(self_cgroup, d.controller);
      if (rel.ok()) d.origin = JoinPath(d.mount, *rel);
    }
    CASK_TRY(WriteString(JoinPath(d.path, "cgroup.procs"), std::to_string(pid)));
  }
  return Ok();
}

Result<std::vector<pid_t>> HostCgroup::Pids() const {
  std::set<pid_t> all;
  for (const auto& d : dirs_) {
    auto pids = ReadProcs(d.path);
    if (!pids.ok()) {
      if (pids.error().sys_errno() == ENOENT) continue;  // removed meanwhile
      return std::move(pids).error();
    }
    all.insert(pids->begin(), pids->end());
  }
  return std::vector<pid_t>(all.begin(), all.end());
}

Status HostCgroup::MoveCallerBack() {
  pid_t self = ::getpid();
  for (auto& d : dirs_) {
    if (d.origin.empty() || !IsMember(d.path, self)) continue;
    CASK_TRY_CTX(WriteString(JoinPath(d.origin, "cgroup.procs"), std::to_string(self)),
                 "move the caller back to cgroup " + d.origin);
  }
  return Ok();
}

Status HostCgroup::KillAll(std::chrono::milliseconds timeout) {
  pid_t self = ::getpid();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool used_kill_file = false;
  for (;;) {
    CASK_ASSIGN_OR_RETURN(std::vector<pid_t> pids, Pids());
    pids.erase(std::remove(pids.begin(), pids.end(), self), pids.end());
    if (pids.empty()) return Ok();
    // cgroup.kill (Linux 5.14) kills every member, including ones forked
    // meanwhile; it would kill the caller too, so only when it is not a member.
    bool caller_inside = false;
    for (const auto& d : dirs_) caller_inside |= IsMember(d.path, self);
    if (!used_kill_file && !caller_inside) {
      for (const auto& d : dirs_) {
        std::string kill_file = JoinPath(d.path, "cgroup.kill");
        if (PathExists(kill_file) && WriteString(kill_file, "1").ok()) {
          used_kill_file = true;
          break;
        }
      }
    }
    if (!used_kill_file)
      for (const auto& d : dirs_)
        for (pid_t p : pids) KillMember(d.path, p);
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string list;
      for (pid_t p : pids) list += (list.empty() ? "" : ", ") + std::to_string(p);
      return Error::DeadlineExceeded("cgroup still has processes after SIGKILL: " + list);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // A member that ignored nothing but was forking: signal again.
    used_kill_file = false;
  }
}

Status HostCgroup::Remove(std::chrono::milliseconds timeout) {
  if (!valid()) return Ok();
  CASK_TRY(MoveCallerBack());
  CASK_TRY(KillAll(timeout));
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // rmdir fails with EBUSY until the killed members have left (their exit
  // is asynchronous); cgroup.procs is empty by now, so this is short.
  while (!dirs_.empty()) {
    const std::string& p = dirs_.back().path;
    if (::rmdir(p.c_str()) == 0 || errno == ENOENT) {
      dirs_.pop_back();
      continue;
    }
    int err = errno;
    if (err != EBUSY || std::chrono::steady_clock::now() >= deadline) return Error::Sys(err, "rmdir cgroup " + p);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Ok();
}

}  // namespace cask::hypervisor
