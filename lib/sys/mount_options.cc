#include "lib/sys/mount_options.h"

#include <sys/mount.h>

namespace cask::sys {
namespace {

struct FlagWord {
  std::string_view word;
  bool clear;  // the word clears the flag ("rw", "suid", ...)
  unsigned long flag;
};

constexpr FlagWord kFlagWords[] = {
    {"defaults", false, 0},
    {"ro", false, MS_RDONLY},               {"rw", true, MS_RDONLY},
    {"nosuid", false, MS_NOSUID},           {"suid", true, MS_NOSUID},
    {"nodev", false, MS_NODEV},             {"dev", true, MS_NODEV},
    {"noexec", false, MS_NOEXEC},           {"exec", true, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS},        {"async", true, MS_SYNCHRONOUS},
    {"dirsync", false, MS_DIRSYNC},
    {"remount", false, MS_REMOUNT},
    {"mand", false, MS_MANDLOCK},           {"nomand", true, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},         {"atime", true, MS_NOATIME},
    {"nodiratime", false, MS_NODIRATIME},   {"diratime", true, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME},       {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME}, {"nostrictatime", true, MS_STRICTATIME},
    {"lazytime", false, MS_LAZYTIME},       {"nolazytime", true, MS_LAZYTIME},
    {"iversion", false, MS_I_VERSION},      {"noiversion", true, MS_I_VERSION},
    {"silent", false, MS_SILENT},           {"loud", true, MS_SILENT},
    {"bind", false, MS_BIND},               {"rbind", false, MS_BIND | MS_REC},
};

struct PropagationWord {
  std::string_view word;
  unsigned long flag;
};

constexpr PropagationWord kPropagationWords[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

struct AttrWord {
  std::string_view word;
  bool clear;
  uint64_t attr;
};

constexpr AttrWord kRecursiveWords[] = {
    {"rro", false, MOUNT_ATTR_RDONLY},             {"rrw", true, MOUNT_ATTR_RDONLY},
    {"rnosuid", false, MOUNT_ATTR_NOSUID},         {"rsuid", true, MOUNT_ATTR_NOSUID},
    {"rnodev", false, MOUNT_ATTR_NODEV},           {"rdev", true, MOUNT_ATTR_NODEV},
    {"rnoexec", false, MOUNT_ATTR_NOEXEC},         {"rexec", true, MOUNT_ATTR_NOEXEC},
    {"rnodiratime", false, MOUNT_ATTR_NODIRATIME}, {"rdiratime", true, MOUNT_ATTR_NODIRATIME},
};

constexpr std::string_view kUnsupported[] = {"idmap", "ridmap", "tmpcopyup", "copy-symlink"};

constexpr unsigned long kAtimeModes = MS_STRICTATIME | MS_RELATIME | MS_NOATIME;

}  // namespace

bool MountOptions::bind() const { return (flags & MS_BIND) != 0; }

Result<MountOptions> ParseMountOptions(const std::vector<std::string>& options) {
  MountOptions o;
  for (const std::string& opt : options) {
    if (opt.empty()) continue;
    bool found = false;
    for (const auto& f : kFlagWords) {
      if (f.word != opt) continue;
      found = true;
      if (f.clear) {
        o.flags &= ~f.flag;
      } else {
        o.flags |= f.flag;
        // One atime mode: the last one named wins.
        if (f.flag & kAtimeModes) o.flags &= ~(kAtimeModes & ~f.flag);
      }
      break;
    }
    if (found) continue;
    for (const auto& p : kPropagationWords) {
      if (p.word != opt) continue;
      found = true;
      o.propagation.push_back(p.flag);
      break;
    }
    if (found) continue;
    for (const auto& a : kRecursiveWords) {
      if (a.word != opt) continue;
      found = true;
      if (a.clear) {
        o.attr_clr |= a.attr;
        o.attr_set &= ~a.attr;
      } else {
        o.attr_set |= a.attr;
        o.attr_clr &= ~a.attr;
      }
      break;
    }
    if (found) continue;
    for (auto u : kUnsupported) {
      if (u == opt) return Error::InvalidArgument("mount option \"" + opt + "\" is not supported");
    }
    if (!o.data.empty()) o.data += ',';
    o.data += opt;
  }
  return o;
}

Result<unsigned long> ParsePropagation(std::string_view word) {
  if (word.empty()) return 0ul;
  for (const auto& p : kPropagationWords) {
    if (p.word == word) return p.flag;
  }
  return Error::InvalidArgument("bad mount propagation \"" + std::string(word) + "\"");
}

}  // namespace cask::sys
