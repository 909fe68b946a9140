#include "lib/shim/rootfs.h"

#include <sys/mount.h>

#include <cerrno>
#include <string_view>

#include "lib/shim/delete.h"

namespace cask::shim {
namespace {

struct FlagWord {
  std::string_view word;
  bool clear;  // the option clears the flag ("rw", "suid", ...)
  unsigned long flag;
};

constexpr FlagWord kFlagWords[] = {
    {"async", true, MS_SYNCHRONOUS},   {"atime", true, MS_NOATIME},      {"bind", false, MS_BIND},
    {"defaults", false, 0},            {"dev", true, MS_NODEV},          {"diratime", true, MS_NODIRATIME},
    {"dirsync", false, MS_DIRSYNC},    {"exec", true, MS_NOEXEC},        {"mand", false, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},    {"nodev", false, MS_NODEV},       {"nodiratime", false, MS_NODIRATIME},
    {"noexec", false, MS_NOEXEC},      {"nomand", true, MS_MANDLOCK},    {"norelatime", true, MS_RELATIME},
    {"nostrictatime", true, MS_STRICTATIME}, {"nosuid", false, MS_NOSUID}, {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},  {"remount", false, MS_REMOUNT},   {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},           {"strictatime", false, MS_STRICTATIME}, {"suid", true, MS_NOSUID},
    {"sync", false, MS_SYNCHRONOUS},
};

struct PropWord {
  std::string_view word;
  unsigned long flag;
};
constexpr PropWord kPropWords[] = {
    {"private", MS_PRIVATE},     {"rprivate", MS_PRIVATE | MS_REC}, {"shared", MS_SHARED},
    {"rshared", MS_SHARED | MS_REC}, {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

}  // namespace

MountOptions ParseMountOptions(const std::vector<std::string>& options) {
  MountOptions out;
  for (const auto& o : options) {
    bool matched = false;
    for (const auto& fw : kFlagWords) {
      if (o == fw.word) {
        if (fw.clear) out.flags &= ~fw.flag;
        else out.flags |= fw.flag;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    for (const auto& pw : kPropWords) {
      if (o == pw.word) {
        out.propagation |= pw.flag;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (!out.data.empty()) out.data += ',';
    out.data += o;
  }
  return out;
}

Status MountAll(const std::vector<RootfsMount>& mounts, const std::string& target) {
  for (size_t i = 0; i < mounts.size(); ++i) {
    const RootfsMount& m = mounts[i];
    MountOptions mo = ParseMountOptions(m.options);
    std::string what = "mount " + (m.type.empty() ? std::string("(no type)") : m.type) + " " + m.source + " onto " + target;
    auto fail = [&](int err) -> Status {
      (void)UnmountAll(target);
      return Error::Sys(err, what);
    };
    bool bind = (mo.flags & MS_BIND) != 0 || m.type == "bind";
    unsigned long flags = mo.flags;
    if (m.type == "bind") flags |= MS_BIND;
    const char* data = mo.data.empty() ? nullptr : mo.data.c_str();
    unsigned long first = bind ? flags & ~MS_RDONLY : flags;
    if (::mount(m.source.c_str(), target.c_str(), bind ? nullptr : m.type.c_str(), first, data) != 0)
      return fail(errno);
    // A bind mount ignores MS_RDONLY on the first call: remount to apply it.
    if (bind && (flags & MS_RDONLY) &&
        ::mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | (flags & ~(MS_REC | MS_BIND)), nullptr) != 0)
      return fail(errno);
    if (mo.propagation && ::mount(nullptr, target.c_str(), nullptr, mo.propagation, nullptr) != 0) return fail(errno);
  }
  return Ok();
}

}  // namespace cask::shim
