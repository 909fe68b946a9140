#include "lib/container/device_filter.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "lib/base/fs.h"

namespace cask::container {
namespace {

constexpr uint32_t kAllAccess = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;

// Registers of the program (eBPF calling convention: r1 = context on entry,
// r0 = return value).
constexpr uint8_t kCtx = BPF_REG_1, kRet = BPF_REG_0, kTmp = BPF_REG_1;
constexpr uint8_t kType = BPF_REG_2, kAccess = BPF_REG_3, kMajor = BPF_REG_4, kMinor = BPF_REG_5;

bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

// *(u32 *)(ctx + off) into `dst`.
bpf_insn LoadCtx(uint8_t dst, int16_t off) { return Insn(BPF_LDX | BPF_MEM | BPF_W, dst, kCtx, off, 0); }
bpf_insn Alu32Imm(uint8_t op, uint8_t dst, int32_t imm) { return Insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm); }
bpf_insn Mov32Reg(uint8_t dst, uint8_t src) { return Insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0); }
bpf_insn JneImm(uint8_t dst, int32_t imm, int16_t off) { return Insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm); }
bpf_insn JneReg(uint8_t dst, uint8_t src, int16_t off) { return Insn(BPF_JMP | BPF_JNE | BPF_X, dst, src, off, 0); }
bpf_insn Exit() { return Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

// (type, major, minor) of the default devices, all char, all access.
struct DefaultDev {
  int64_t major, minor;
};
constexpr DefaultDev kDefaultDevices[] = {
    {1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9},  // null zero full random urandom
    {5, 0}, {5, 2},                          // tty ptmx
    {136, -1},                               // /dev/pts/*
};

Result<uint32_t> ParseType(const std::string& t) {
  if (t.empty() || t == "a") return 0u;
  if (t == "c") return static_cast<uint32_t>(BPF_DEVCG_DEV_CHAR);
  if (t == "b") return static_cast<uint32_t>(BPF_DEVCG_DEV_BLOCK);
  return Error::InvalidArgument("device rule type \"" + t + "\" is not a, c or b");
}

Result<uint32_t> ParseAccess(const std::string& a) {
  if (a.empty()) return kAllAccess;  // as runc: no letters means all access
  uint32_t mask = 0;
  for (char c : a) {
    if (c == 'r') mask |= BPF_DEVCG_ACC_READ;
    else if (c == 'w') mask |= BPF_DEVCG_ACC_WRITE;
    else if (c == 'm') mask |= BPF_DEVCG_ACC_MKNOD;
    else return Error::InvalidArgument("device rule access \"" + a + "\" has a letter other than r, w, m");
  }
  return mask;
}

Result<int64_t> ParseNumber(const std::optional<int64_t>& n, const char* what) {
  if (!n || *n == -1) return int64_t{-1};
  if (*n < 0 || *n > 0xffffffffll) {
    return Error::InvalidArgument(std::string("device rule ") + what + " " + std::to_string(*n) + " is out of range");
  }
  return *n;
}

bool Unconditional(const DeviceRule& r) {
  return r.type == 0 && r.major == -1 && r.minor == -1 && r.access == kAllAccess;
}

}  // namespace

std::vector<DeviceRule> DefaultDeviceRules() {
  std::vector<DeviceRule> out;
  for (const auto& d : kDefaultDevices) {
    out.push_back(DeviceRule{true, static_cast<uint32_t>(BPF_DEVCG_DEV_CHAR), d.major, d.minor, kAllAccess});
  }
  return out;
}

Result<std::vector<DeviceRule>> EffectiveDeviceRules(const oci::Spec& spec) {
  std::vector<DeviceRule> out;
  const oci::Linux* lx = spec.linux ? &*spec.linux : nullptr;
  if (lx && lx->resources) {
    for (size_t i = 0; i < lx->resources->devices.size(); ++i) {
      const oci::DeviceCgroup& d = lx->resources->devices[i];
      std::string where = "linux.resources.devices[" + std::to_string(i) + "]";
      DeviceRule r;
      r.allow = d.allow;
      CASK_ASSIGN_OR_RETURN(r.type, ParseType(d.type).Context(where));
      CASK_ASSIGN_OR_RETURN(r.major, ParseNumber(d.major, "major").Context(where));
      CASK_ASSIGN_OR_RETURN(r.minor, ParseNumber(d.minor, "minor").Context(where));
      CASK_ASSIGN_OR_RETURN(r.access, ParseAccess(d.access).Context(where));
      out.push_back(r);
    }
  }
  if (lx) {
    for (const auto& d : lx->devices) {
      uint32_t type;
      if (d.type == "c" || d.type == "u") type = BPF_DEVCG_DEV_CHAR;
      else if (d.type == "b") type = BPF_DEVCG_DEV_BLOCK;
      else continue;  // a fifo ("p") is no device
      if (d.major < 0 || d.minor < 0 || d.major > 0xffffffffll || d.minor > 0xffffffffll) {
        return Error::InvalidArgument("device " + d.path + " has a bad major/minor");
      }
      out.push_back(DeviceRule{true, type, d.major, d.minor, kAllAccess});
    }
  }
  for (const auto& r : DefaultDeviceRules()) out.push_back(r);
  return out;
}

bool AllowsAll(const std::vector<DeviceRule>& rules) {
  // The last unconditional rule decides for every device it does not leave
  // to a later rule; everything after it must allow too.
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    if (!it->allow) return false;
    if (Unconditional(*it)) return true;
  }
  return false;
}

std::vector<bpf_insn> BuildDeviceProgram(const std::vector<DeviceRule>& rules) {
  // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
  // with access_type = (access << 16) | type.
  std::vector<bpf_insn> p = {
      LoadCtx(kType, 0),
      Alu32Imm(BPF_AND, kType, 0xffff),
      LoadCtx(kAccess, 0),
      Alu32Imm(BPF_RSH, kAccess, 16),
      LoadCtx(kMajor, 4),
      LoadCtx(kMinor, 8),
  };
  // Last rule first: the first match in the program is the last match in
  // the list. Rules before an unconditional one are never reached.
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    const DeviceRule& r = *it;
    std::vector<bpf_insn> block;
    // Each test jumps past the rest of the block when the rule does not
    // match; the offsets are fixed up once the block's length is known.
    std::vector<size_t> jumps;
    if (r.type != 0) {
      jumps.push_back(block.size());
      block.push_back(JneImm(kType, static_cast<int32_t>(r.type), 0));
    }
    if ((r.access & kAllAccess) != kAllAccess) {
      // The rule matches if the requested access is a subset of its own.
      block.push_back(Mov32Reg(kTmp, kAccess));
      block.push_back(Alu32Imm(BPF_AND, kTmp, static_cast<int32_t>(r.access)));
      jumps.push_back(block.size());
      block.push_back(JneReg(kTmp, kAccess, 0));
    }
    if (r.major != -1) {
      jumps.push_back(block.size());
      block.push_back(JneImm(kMajor, static_cast<int32_t>(static_cast<uint32_t>(r.major)), 0));
    }
    if (r.minor != -1) {
      jumps.push_back(block.size());
      block.push_back(JneImm(kMinor, static_cast<int32_t>(static_cast<uint32_t>(r.minor)), 0));
    }
    block.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_K, kRet, 0, 0, r.allow ? 1 : 0));
    block.push_back(Exit());
    for (size_t j : jumps) block[j].off = static_cast<int16_t>(block.size() - j - 1);
    p.insert(p.end(), block.begin(), block.end());
    if (Unconditional(r)) return p;
  }
  p.push_back(Insn(BPF_ALU64 | BPF_MOV | BPF_K, kRet, 0, 0, 0));
  p.push_back(Exit());
  return p;
}

Result<UniqueFd> LoadDeviceProgram(const std::vector<bpf_insn>& insns) {
  if (insns.empty() || insns.size() > BPF_MAXINSNS) {
    return Error::InvalidArgument("device program of " + std::to_string(insns.size()) + " instructions");
  }
  static constexpr char kLicense[] = "Apache-2.0";
  // The verifier's log is only asked for on a retry after a failure.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string log(attempt == 0 ? 0 : 16384, '\0');
    bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = reinterpret_cast<uint64_t>(insns.data());
    attr.insn_cnt = static_cast<uint32_t>(insns.size());
    attr.license = reinterpret_cast<uint64_t>(kLicense);
    if (!log.empty()) {
      attr.log_buf = reinterpret_cast<uint64_t>(log.data());
      attr.log_size = static_cast<uint32_t>(log.size());
      attr.log_level = 1;
    }
    long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    int err = errno;
    if (attempt == 1 || (err != EINVAL && err != EACCES)) {
      std::string msg = "load the device cgroup program (BPF_PROG_LOAD)";
      log.resize(strnlen(log.data(), log.size()));
      if (log.size() > 2048) log = log.substr(log.size() - 2048);  // the end says why
      if (!log.empty()) msg += "; verifier: " + log;
      return Error::Sys(err, msg);
    }
  }
  return Error::Internal("unreachable");
}

Status AttachDeviceProgram(int cgroup_dir, int prog) {
  bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.target_fd = static_cast<uint32_t>(cgroup_dir);
  attr.attach_bpf_fd = static_cast<uint32_t>(prog);
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof attr) != 0) {
    return Error::Sys(errno, "attach the device cgroup program (BPF_PROG_ATTACH; kernel without CONFIG_CGROUP_BPF?)");
  }
  return Ok();
}

Status DetachDeviceProgram(int cgroup_dir, int prog) {
  bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.target_fd = static_cast<uint32_t>(cgroup_dir);
  attr.attach_bpf_fd = static_cast<uint32_t>(prog);
  attr.attach_type = BPF_CGROUP_DEVICE;
  if (syscall(SYS_bpf, BPF_PROG_DETACH, &attr, sizeof attr) != 0) {
    return Error::Sys(errno, "detach the device cgroup program");
  }
  return Ok();
}

Result<UniqueFd> ApplyDeviceRules(const std::string& cgroup_path, const std::vector<DeviceRule>& rules) {
  CASK_ASSIGN_OR_RETURN(UniqueFd dir, Open(cgroup_path, O_RDONLY | O_DIRECTORY));
  CASK_ASSIGN_OR_RETURN(UniqueFd prog, LoadDeviceProgram(BuildDeviceProgram(rules)));
  CASK_TRY(AttachDeviceProgram(dir.get(), prog.get()).Context("cgroup " + cgroup_path));
  return prog;
}

}  // namespace cask::container
