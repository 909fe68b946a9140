#include "lib/hypervisor/vm_leftovers.h"

#include <errno.h>
#include <signal.h>

#include "lib/base/fs.h"
#include "lib/hypervisor/host_cgroup.h"

namespace cask::hypervisor {
namespace {

Result<uint64_t> ParseNumber(std::string_view s, std::string_view what) {
  if (s.empty() || s.size() > 20) return Error::InvalidArgument("host-processes: bad " + std::string(what));
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return Error::InvalidArgument("host-processes: bad " + std::string(what));
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

Result<ProcessIdentity> ParseIdentity(std::string_view rest) {
  size_t sp = rest.find(' ');
  if (sp == std::string_view::npos) return Error::InvalidArgument("host-processes: expected \"<pid> <start time>\"");
  CASK_ASSIGN_OR_RETURN(uint64_t pid, ParseNumber(rest.substr(0, sp), "pid"));
  CASK_ASSIGN_OR_RETURN(uint64_t start, ParseNumber(rest.substr(sp + 1), "start time"));
  if (pid == 0 || pid > 4194304) return Error::InvalidArgument("host-processes: pid out of range");
  return ProcessIdentity{static_cast<pid_t>(pid), start};
}

std::string Line(std::string_view key, const ProcessIdentity& id) {
  return std::string(key) + " " + std::to_string(id.pid) + " " + std::to_string(id.start_time) + "\n";
}

}  // namespace

std::string FormatHostProcesses(const HostProcesses& p) {
  std::string s;
  if (p.vmm) s += Line("vmm", *p.vmm);
  if (p.virtiofsd) s += Line("virtiofsd", *p.virtiofsd);
  for (const auto& d : p.cgroup_dirs) s += "cgroup " + d + "\n";
  return s;
}

Result<HostProcesses> ParseHostProcesses(std::string_view text) {
  if (text.size() > kMaxHostProcessesBytes) return Error::InvalidArgument("host-processes: too large");
  HostProcesses p;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    std::string_view key = line.substr(0, sp);
    std::string_view rest = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    if (key == "vmm") {
      CASK_ASSIGN_OR_RETURN(p.vmm, ParseIdentity(rest));
    } else if (key == "virtiofsd") {
      CASK_ASSIGN_OR_RETURN(p.virtiofsd, ParseIdentity(rest));
    } else if (key == "cgroup") {
      if (rest.empty() || rest.front() != '/') return Error::InvalidArgument("host-processes: cgroup must be absolute");
      p.cgroup_dirs.emplace_back(rest);
    } else {
      return Error::InvalidArgument("host-processes: unknown line \"" + std::string(line.substr(0, 64)) + "\"");
    }
  }
  return p;
}

Status WriteHostProcesses(const std::string& state_dir, const HostProcesses& p) {
  return WriteFileAtomic(JoinPath(state_dir, kHostProcessesFile), FormatHostProcesses(p), 0600);
}

Result<HostProcesses> ReadHostProcesses(const std::string& state_dir) {
  std::string path = JoinPath(state_dir, kHostProcessesFile);
  auto text = ReadFile(path);
  if (!text.ok()) {
    if (text.error().sys_errno() == ENOENT) return Error::NotFound(path + " does not exist");
    return std::move(text).error();
  }
  return ParseHostProcesses(*text).Context("read " + path);
}

Status KillVmLeftovers(const std::string& state_dir, std::chrono::milliseconds timeout) {
  auto rec = ReadHostProcesses(state_dir);
  if (!rec.ok()) {
    if (rec.error().code() == Code::kNotFound) return Ok();
    return std::move(rec).error();
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::optional<Error> first;
  {
    auto cg = HostCgroup::Adopt(rec->cgroup_dirs);
    if (!cg.ok()) {
      first = std::move(cg).error();
    } else if (Status st = cg->Remove(timeout); !st.ok()) {
      first = std::move(st).error().Wrap("remove the VM's cgroup");
    }
  }
  // Without a cgroup (disabled, or a process that escaped it), each
  // recorded process, if still the same one.
  for (const auto& id : {rec->vmm, rec->virtiofsd}) {
    if (!id) continue;
    (void)SignalIdentified(*id, SIGKILL);
  }
  for (const auto& id : {rec->vmm, rec->virtiofsd}) {
    if (!id) continue;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (!WaitExited(*id, std::max(left, std::chrono::milliseconds(1))) && !first)
      first = Error::DeadlineExceeded("process " + std::to_string(id->pid) + " did not exit after SIGKILL");
  }
  if (first) return std::move(*first);
  return Ok();
}

}  // namespace cask::hypervisor
