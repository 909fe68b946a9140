#include "lib/container/seccomp.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <cerrno>
#include <map>
#include <memory>

#include "lib/base/unique_fd.h"

namespace cask::container {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

Result<uint32_t> Action(const std::string& name, std::optional<uint32_t> errno_ret) {
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_NOTIFY") {
    return Error::InvalidArgument("seccomp action SCMP_ACT_NOTIFY is not supported");
  }
  return Error::InvalidArgument("unknown seccomp action \"" + name + "\"");
}

Result<scmp_compare> Operator(const std::string& op) {
  static const std::map<std::string, scmp_compare> kOps = {
      {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT},
      {"SCMP_CMP_LE", SCMP_CMP_LE}, {"SCMP_CMP_EQ", SCMP_CMP_EQ},
      {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
      {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
  };
  auto it = kOps.find(op);
  if (it == kOps.end()) return Error::InvalidArgument("unknown seccomp operator \"" + op + "\"");
  return it->second;
}

Result<uint32_t> Arch(const std::string& name) {
  constexpr std::string_view kPrefix = "SCMP_ARCH_";
  if (name.rfind(kPrefix, 0) != 0) {
    return Error::InvalidArgument("unknown seccomp architecture \"" + name + "\"");
  }
  std::string lower;
  for (char c : name.substr(kPrefix.size())) {
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  uint32_t arch = seccomp_arch_resolve_name(lower.c_str());
  if (arch == 0) return Error::InvalidArgument("unknown seccomp architecture \"" + name + "\"");
  return arch;
}

Result<unsigned int> Flag(const std::string& name) {
  if (name == "SECCOMP_FILTER_FLAG_TSYNC") return SECCOMP_FILTER_FLAG_TSYNC;
  if (name == "SECCOMP_FILTER_FLAG_LOG") return SECCOMP_FILTER_FLAG_LOG;
  if (name == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") return SECCOMP_FILTER_FLAG_SPEC_ALLOW;
  if (name == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV") {
    // Only meaningful with SCMP_ACT_NOTIFY, which is not supported.
    return 0u;
  }
  return Error::InvalidArgument("unknown seccomp flag \"" + name + "\"");
}

Status AddRule(void* ctx, uint32_t action, int nr, const std::string& name,
               const std::vector<scmp_arg_cmp>& cmps) {
  int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(cmps.size()),
                                  cmps.empty() ? nullptr : cmps.data());
  if (rc != 0) return Error::Sys(-rc, "seccomp rule for syscall " + name);
  return Ok();
}

// Builds the libseccomp filter context of a profile.
Result<Ctx> Build(const oci::Seccomp& profile) {
  CASK_ASSIGN_OR_RETURN(uint32_t def, Action(profile.default_action, profile.default_errno_ret));
  Ctx ctx(seccomp_init(def));
  if (!ctx) return Error::InvalidArgument("seccomp_init failed for the default action");
  // The child sets no_new_privs itself (or keeps CAP_SYS_ADMIN to load).
  seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  for (const auto& a : profile.architectures) {
    CASK_ASSIGN_OR_RETURN(uint32_t arch, Arch(a));
    int rc = seccomp_arch_add(ctx.get(), arch);
    if (rc != 0 && rc != -EEXIST) return Error::Sys(-rc, "seccomp architecture " + a);
  }
  for (const auto& f : profile.flags) CASK_TRY(Flag(f));

  for (const auto& sc : profile.syscalls) {
    CASK_ASSIGN_OR_RETURN(uint32_t action, Action(sc.action, sc.errno_ret));
    std::vector<scmp_arg_cmp> cmps;
    std::map<uint32_t, int> per_index;
    for (const auto& a : sc.args) {
      if (a.index > 5) {
        return Error::InvalidArgument("seccomp argument index " + std::to_string(a.index) +
                                      " out of range (0-5)");
      }
      CASK_ASSIGN_OR_RETURN(scmp_compare op, Operator(a.op));
      cmps.push_back(scmp_arg_cmp{a.index, op, a.value, a.value_two});
      per_index[a.index]++;
    }
    bool repeated = false;
    for (const auto& [idx, n] : per_index) repeated |= n > 1;
    // A rule equal to the default action is redundant, and libseccomp
    // rejects it.
    if (action == def) continue;
    for (const auto& name : sc.names) {
      int nr = seccomp_syscall_resolve_name(name.c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp/arch
      if (!repeated) {
        CASK_TRY(AddRule(ctx.get(), action, nr, name, cmps));
      } else {
        // libseccomp ANDs the conditions of one rule but cannot compare one
        // argument twice; like runc, give each condition its own rule (OR).
        for (const auto& c : cmps) CASK_TRY(AddRule(ctx.get(), action, nr, name, {c}));
      }
    }
  }
  return ctx;
}

Result<std::string> Export(void* ctx, bool pfc) {
  UniqueFd fd(memfd_create("cask-seccomp", MFD_CLOEXEC));
  if (!fd) return Error::Sys(errno, "memfd_create");
  int rc = pfc ? seccomp_export_pfc(ctx, fd.get()) : seccomp_export_bpf(ctx, fd.get());
  if (rc != 0) return Error::Sys(-rc, pfc ? "seccomp_export_pfc" : "seccomp_export_bpf");
  off_t size = lseek(fd.get(), 0, SEEK_END);
  if (size < 0) return Error::Sys(errno, "lseek memfd");
  std::string out(static_cast<size_t>(size), '\0');
  if (size > 0 && pread(fd.get(), out.data(), out.size(), 0) != size) {
    return Error::Sys(errno, "read memfd");
  }
  return out;
}

}  // namespace

Result<SeccompProgram> CompileSeccomp(const oci::Seccomp& profile) {
  CASK_ASSIGN_OR_RETURN(Ctx ctx, Build(profile).Context("seccomp profile"));
  CASK_ASSIGN_OR_RETURN(std::string bpf, Export(ctx.get(), false));
  if (bpf.size() % sizeof(sock_filter) != 0 || bpf.empty()) {
    return Error::Internal("seccomp_export_bpf produced " + std::to_string(bpf.size()) +
                           " bytes, not whole instructions");
  }
  if (bpf.size() / sizeof(sock_filter) > BPF_MAXINSNS) {
    return Error::InvalidArgument("seccomp profile compiles to " +
                                  std::to_string(bpf.size() / sizeof(sock_filter)) +
                                  " BPF instructions, more than the kernel's limit of " +
                                  std::to_string(BPF_MAXINSNS));
  }
  SeccompProgram prog;
  prog.instructions.resize(bpf.size() / sizeof(sock_filter));
  memcpy(prog.instructions.data(), bpf.data(), bpf.size());
  for (const auto& f : profile.flags) {
    CASK_ASSIGN_OR_RETURN(unsigned int bit, Flag(f));
    prog.flags |= bit;
  }
  return prog;
}

Result<std::string> SeccompPfc(const oci::Seccomp& profile) {
  CASK_ASSIGN_OR_RETURN(Ctx ctx, Build(profile).Context("seccomp profile"));
  return Export(ctx.get(), true);
}

Status LoadSeccomp(const SeccompProgram& prog) {
  if (prog.empty()) return Ok();
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(prog.instructions.size());
  fprog.filter = const_cast<sock_filter*>(prog.instructions.data());
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, prog.flags, &fprog) != 0) {
    return Error::Sys(errno, "load seccomp filter");
  }
  return Ok();
}

}  // namespace cask::container
