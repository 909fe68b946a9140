#include "lib/hypervisor/process_identity.h"

#include <errno.h>
#include <thread>

#include "lib/base/fs.h"

namespace cask::hypervisor {
namespace {

// pidfd_open, with NOT_FOUND when there is no such process.
Result<sys::Pidfd> PidfdOpen(pid_t pid) {
  auto pidfd = sys::Pidfd::Open(pid);
  if (!pidfd.ok() && pidfd.error().sys_errno() == ESRCH) return Error::NotFound("no process " + std::to_string(pid));
  return pidfd;
}

// The process has exited (a zombie, or reaped) by `timeout`.
bool Exited(const sys::Pidfd& pidfd, std::chrono::milliseconds timeout) {
  auto r = pidfd.WaitExited(timeout);
  return r.ok() && *r;
}

}  // namespace

Result<ProcStat> ParseProcStat(std::string_view text) {
  size_t close = text.rfind(')');
  if (close == std::string_view::npos) return Error::InvalidArgument("malformed /proc/<pid>/stat: no ')'");
  std::string_view rest = text.substr(close + 1);
  // rest: " state ppid pgrp session tty_nr tpgid flags ... starttime(22)"
  ProcStat st;
  int field = 2;
  while (!rest.empty()) {
    size_t b = rest.find_first_not_of(' ');
    if (b == std::string_view::npos) break;
    rest.remove_prefix(b);
    size_t e = rest.find(' ');
    std::string_view tok = rest.substr(0, e);
    field++;
    if (field == 3) {
      if (tok.size() != 1) return Error::InvalidArgument("malformed /proc/<pid>/stat: state");
      st.state = tok[0];
    } else if (field == 9 || field == 22) {
      uint64_t v = 0;
      if (tok.empty() || tok.size() > 20) return Error::InvalidArgument("malformed /proc/<pid>/stat: field " + std::to_string(field));
      for (char c : tok) {
        if (c < '0' || c > '9') return Error::InvalidArgument("malformed /proc/<pid>/stat: field " + std::to_string(field));
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      (field == 9 ? st.flags : st.start_time) = v;
      if (field == 22) return st;
    }
    if (e == std::string_view::npos) break;
    rest.remove_prefix(e);
  }
  return Error::InvalidArgument("malformed /proc/<pid>/stat: fewer than 22 fields");
}

Result<ProcStat> ReadProcStat(pid_t pid) {
  if (pid <= 0) return Error::InvalidArgument("invalid pid " + std::to_string(pid));
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) {
    if (text.error().sys_errno() == ENOENT || text.error().sys_errno() == ESRCH)
      return Error::NotFound("no process " + std::to_string(pid));
    return std::move(text).error();
  }
  return ParseProcStat(*text);
}

Result<ProcessIdentity> IdentityOf(pid_t pid) {
  CASK_ASSIGN_OR_RETURN(ProcStat st, ReadProcStat(pid));
  return ProcessIdentity{pid, st.start_time};
}

Result<sys::Pidfd> OpenIdentified(const ProcessIdentity& id) {
  if (id.pid <= 0) return Error::InvalidArgument("invalid pid " + std::to_string(id.pid));
  CASK_ASSIGN_OR_RETURN(sys::Pidfd pidfd, PidfdOpen(id.pid));
  // Read after the pidfd pins the pid: a match means the pidfd is the
  // recorded process.
  CASK_ASSIGN_OR_RETURN(ProcStat st, ReadProcStat(id.pid));
  if (st.start_time != id.start_time)
    return Error::NotFound("pid " + std::to_string(id.pid) + " now names another process");
  return pidfd;
}

Liveness CheckLiveness(const ProcessIdentity& id) {
  auto pidfd = OpenIdentified(id);
  if (!pidfd.ok()) return Liveness::kGone;
  if (Exited(*pidfd, std::chrono::milliseconds(0))) return Liveness::kExiting;
  auto st = ReadProcStat(id.pid);
  if (!st.ok()) return Liveness::kGone;
  if (st->state == 'Z' || st->state == 'X' || (st->flags & kPfExiting) != 0) return Liveness::kExiting;
  return Liveness::kRunning;
}

bool WaitExited(const ProcessIdentity& id, std::chrono::milliseconds timeout) {
  auto pidfd = OpenIdentified(id);
  if (!pidfd.ok()) return true;
  return Exited(*pidfd, timeout);
}

Status SignalIdentified(const ProcessIdentity& id, int sig) {
  CASK_ASSIGN_OR_RETURN(sys::Pidfd pidfd, OpenIdentified(id));
  Status st = pidfd.Signal(sig);
  if (!st.ok() && st.error().sys_errno() == ESRCH) return Error::NotFound("process " + std::to_string(id.pid) + " exited");
  return st;
}

}  // namespace cask::hypervisor
