#include "lib/hypervisor/probe.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"

namespace cask::hypervisor {
namespace {

// Calls fn(line) for each line of text.
template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    fn(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// "key<spaces/tabs>: value" -> value, if the line's key is `key`.
bool LineValue(std::string_view line, std::string_view key, std::string_view* value) {
  if (line.substr(0, key.size()) != key) return false;
  std::string_view rest = line.substr(key.size());
  size_t i = 0;
  while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\t')) i++;
  if (i >= rest.size() || rest[i] != ':') return false;
  rest.remove_prefix(i + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  *value = rest;
  return true;
}

}  // namespace

bool CpuinfoHasVirt(std::string_view cpuinfo) {
  bool found = false;
  ForEachLine(cpuinfo, [&](std::string_view line) {
    std::string_view flags;
    if (found || !LineValue(line, "flags", &flags)) return;
    while (!flags.empty()) {
      size_t sp = flags.find(' ');
      std::string_view word = flags.substr(0, sp);
      if (word == "vmx" || word == "svm") found = true;
      if (sp == std::string_view::npos) break;
      flags.remove_prefix(sp + 1);
    }
  });
  return found;
}

uint64_t CpuinfoTscKhz(std::string_view cpuinfo) {
  uint64_t khz = 0;
  bool done = false;
  ForEachLine(cpuinfo, [&](std::string_view line) {
    std::string_view v;
    if (done || !LineValue(line, "cpu MHz", &v)) return;
    done = true;
    // Fixed-point parse: digits, optional '.', up to three decimals.
    uint64_t whole = 0, frac = 0;
    size_t i = 0, ndigits = 0;
    for (; i < v.size() && v[i] >= '0' && v[i] <= '9'; i++, ndigits++) {
      if (whole > 100000000) return;  // absurd: leave 0
      whole = whole * 10 + static_cast<uint64_t>(v[i] - '0');
    }
    if (ndigits == 0) return;
    int fdigits = 0;
    if (i < v.size() && v[i] == '.') {
      for (i++; i < v.size() && v[i] >= '0' && v[i] <= '9'; i++) {
        if (fdigits < 3) {
          frac = frac * 10 + static_cast<uint64_t>(v[i] - '0');
          fdigits++;
        }
      }
    }
    if (i != v.size()) return;
    for (; fdigits < 3; fdigits++) frac *= 10;
    khz = whole * 1000 + frac;
  });
  return khz;
}

HostProbe ProbeHost() {
  HostProbe p;
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    p.kvm_usable = true;
    ::close(fd);
  }
  p.vhost_vsock = ::access("/dev/vhost-vsock", F_OK) == 0;
  auto cpuinfo = ReadFile("/proc/cpuinfo");
  if (cpuinfo.ok()) {
    p.cpu_has_virt = CpuinfoHasVirt(*cpuinfo);
    p.tsc_khz = CpuinfoTscKhz(*cpuinfo);
  }
  return p;
}

Accel ResolveAccel(Accel requested, const HostProbe& host) {
  if (requested != Accel::kAuto) return requested;
  return host.kvm_usable && host.cpu_has_virt ? Accel::kKvm : Accel::kTcg;
}

Accel ResolveAccel(Accel requested) { return ResolveAccel(requested, ProbeHost()); }

Channel ResolveChannel(ChannelRequest requested, const HostProbe& host) {
  switch (requested) {
    case ChannelRequest::kSerial: return Channel::kSerial;
    case ChannelRequest::kVsock: return Channel::kVsock;
    case ChannelRequest::kAuto: break;
  }
  return host.vhost_vsock ? Channel::kVsock : Channel::kSerial;
}

Channel ResolveChannel(ChannelRequest requested) { return ResolveChannel(requested, ProbeHost()); }

std::string_view AccelWord(Accel a) {
  switch (a) {
    case Accel::kAuto: return "auto";
    case Accel::kKvm: return "kvm";
    case Accel::kTcg: return "tcg";
  }
  return "auto";
}

std::string_view ChannelWord(Channel c) { return c == Channel::kVsock ? "vsock" : "serial"; }

}  // namespace cask::hypervisor
