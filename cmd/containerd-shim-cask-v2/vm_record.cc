#include "cmd/containerd-shim-cask-v2/vm_record.h"

#include <unistd.h>

#include <chrono>

#include "lib/base/fs.h"
#include "lib/hypervisor/vm_leftovers.h"
#include "lib/sandbox/shared_dir.h"

namespace cask::shim {
namespace {

using hypervisor::Liveness;

// The file is written by the shim into a root-owned bundle; a bound keeps
// a damaged one from costing memory.
constexpr size_t kMaxRecordBytes = 8192;
// How long a shim that is being killed gets to finish exiting.
constexpr std::chrono::milliseconds kExitingShimWait{2000};
constexpr std::chrono::milliseconds kLeftoverKillTimeout{3000};

Result<uint64_t> Number(std::string_view s, const std::string& record) {
  if (s.empty() || s.size() > 20) return Error::InvalidArgument(record + ": bad number");
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return Error::InvalidArgument(record + ": bad number");
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace

Status WriteVmRecord(const std::string& bundle, const std::string& vm_dir) {
  CASK_ASSIGN_OR_RETURN(hypervisor::ProcessIdentity self, hypervisor::IdentityOf(::getpid()));
  std::string text = "vm_dir " + vm_dir + "\nshim " + std::to_string(self.pid) + " " +
                     std::to_string(self.start_time) + "\n";
  return WriteFileAtomic(JoinPath(bundle, kVmRecordFile), text, 0600);
}

void RemoveVmRecord(const std::string& bundle) { ::unlink(JoinPath(bundle, kVmRecordFile).c_str()); }

Result<VmRecord> ReadVmRecord(const std::string& bundle) {
  const std::string record = JoinPath(bundle, kVmRecordFile);
  auto text = ReadFile(record);
  if (!text.ok()) {
    if (text.error().sys_errno() == ENOENT) return Error::NotFound(record + " does not exist");
    return std::move(text).error();
  }
  if (text->size() > kMaxRecordBytes) return Error::InvalidArgument(record + ": too large");
  VmRecord r;
  std::string_view t = *text;
  while (!t.empty()) {
    size_t nl = t.find('\n');
    std::string_view line = t.substr(0, nl);
    t.remove_prefix(nl == std::string_view::npos ? t.size() : nl + 1);
    if (line.rfind("vm_dir ", 0) == 0) {
      r.vm_dir = std::string(line.substr(7));
    } else if (line.rfind("shim ", 0) == 0) {
      std::string_view rest = line.substr(5);
      size_t sp = rest.find(' ');
      if (sp == std::string_view::npos) return Error::InvalidArgument(record + ": shim line needs pid and start time");
      CASK_ASSIGN_OR_RETURN(uint64_t pid, Number(rest.substr(0, sp), record));
      CASK_ASSIGN_OR_RETURN(uint64_t start, Number(rest.substr(sp + 1), record));
      if (pid == 0 || pid > 4194304) return Error::InvalidArgument(record + ": pid out of range");
      r.shim = hypervisor::ProcessIdentity{static_cast<pid_t>(pid), start};
    } else if (!line.empty()) {
      return Error::InvalidArgument(record + ": unknown line");
    }
  }
  if (r.vm_dir.empty() || r.vm_dir[0] != '/') return Error::InvalidArgument(record + ": no absolute vm_dir");
  if (r.shim.pid == 0) return Error::InvalidArgument(record + ": no shim identity");
  return r;
}

Status CleanupDeadVm(const std::string& bundle) {
  auto rec = ReadVmRecord(bundle);
  if (!rec.ok()) {
    if (rec.error().code() == Code::kNotFound) return Ok();  // no VM was ever recorded here
    return std::move(rec).error();
  }
  switch (hypervisor::CheckLiveness(rec->shim)) {
    case Liveness::kRunning:
      return Ok();  // the shim still owns its VM
    case Liveness::kExiting:
      // Killed, not yet gone: its sockets may still accept. Let it finish
      // so that nothing it does while exiting races the cleanup.
      (void)hypervisor::WaitExited(rec->shim, kExitingShimWait);
      break;
    case Liveness::kGone:
      break;
  }
  const std::string& dir = rec->vm_dir;
  CASK_TRY_CTX(hypervisor::KillVmLeftovers(dir, kLeftoverKillTimeout), "kill what VM " + dir + " left");
  if (PathExists(dir)) {
    CASK_TRY_CTX(sandbox::UnmountAllUnder(dir), "clean up VM directory " + dir);
    CASK_TRY_CTX(sandbox::RemoveTreeNoMounts(dir), "clean up VM directory " + dir);
  }
  RemoveVmRecord(bundle);
  return Ok();
}

}  // namespace cask::shim
