// Host capability probes behind ProbeHost() (hypervisor.h), split into pure
// parsers so they are unit-tested on fixed text.
#pragma once

#include <cstdint>
#include <string_view>

namespace cask::hypervisor {

// True when a "flags" line of /proc/cpuinfo has the word vmx or svm.
bool CpuinfoHasVirt(std::string_view cpuinfo);
// The first "cpu MHz" of /proc/cpuinfo in kHz (2445.404 -> 2445404); 0 if
// absent or malformed.
uint64_t CpuinfoTscKhz(std::string_view cpuinfo);

}  // namespace cask::hypervisor
