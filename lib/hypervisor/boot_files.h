// Giving back the host memory of a booted VM's boot files.
//
// QEMU maps the guest kernel image (vmlinux: a private file mapping it keeps
// for machine reset) and the initrd (handed to the firmware through fw_cfg),
// and both are copied into guest RAM before the guest's first instruction.
// cask's VMs are never reset (QEMU runs with -no-reboot: a guest reboot ends
// the VM), so once the guest runs, QEMU does not read those pages again; yet
// they stay resident and, while one VM maps them, count fully in its PSS
// (15 MiB for the lean kernel, 2 MiB for its initrd).
//
// PageOutFileMappings asks the host kernel to reclaim them
// (process_madvise(MADV_PAGEOUT)): clean file pages that this process alone
// maps are dropped (from the page cache too); pages another process maps
// (another VM booted from the same file) are left alone. Were the pages read
// again, they would fault back in from the file (a page the VMM wrote would
// be swapped, never discarded): nothing is lost, so this is safe at any time
// and only useless before the guest has booted. Dropping the pages evicts
// them from the page cache as well, so the files are then read back into it
// in the background (POSIX_FADV_WILLNEED), unmapped: cached pages that no
// process maps count in nobody's PSS and the host reclaims them under
// pressure, and the next VM's boot does not wait for the disk. Best effort by contract:
// an error leaves the VM as it was and is for the log, never fatal.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/sys/pidfd.h"

namespace cask::hypervisor {

// One line of /proc/PID/maps that maps a file.
struct FileMapping {
  uint64_t start = 0, end = 0;  // [start, end)
  std::string path;             // as the kernel printed it
};

// The mappings in `maps` (the text of /proc/PID/maps) of one of `files`
// (absolute paths as the kernel prints them: canonical, see realpath(3)).
// A mapping of a file deleted or replaced since it was mapped
// ("PATH (deleted)") counts as PATH's. Lines that do not parse (a bad
// range, fewer than six fields) are skipped: the text is the kernel's, but
// the process it describes runs a guest, and a mapping missed only means
// less memory given back.
std::vector<FileMapping> SelectFileMappings(std::string_view maps, const std::vector<std::string>& files);

struct PageOutReport {
  size_t mappings = 0;        // mappings advised
  uint64_t mapped_bytes = 0;  // their total size (not all of it resident)
  uint64_t rss_before_kib = 0, rss_after_kib = 0;  // the process's VmRSS around the advice
  size_t readahead_files = 0;  // files whose read-back into the page cache was started
};

// At most this much of /proc/PID/maps is read (65,530 mappings, the
// default vm.max_map_count, print in about 6 MiB; QEMU has a few hundred).
inline constexpr size_t kMaxMapsBytes = 8u << 20;

// Pages out the mappings of `files` in `process` (see the top of this
// file). Each path is canonicalised (realpath(3)) and kept as given when
// that fails. Reads /proc/<pid>/maps (at most kMaxMapsBytes) and then checks
// that `process` is still alive, so the maps read were its own and not
// those of a later process with a reused pid. When something was paged
// out, then starts the read-back of every file into the page cache
// (failures ignored: only a later boot's speed depends on it). Every selected mapping is
// advised even when one fails; the first failure is returned (ESRCH: the
// process exited; EPERM: no CAP_SYS_NICE; ENOSYS: a host kernel before
// 5.10). No mapping of `files` is not an error (mappings == 0); no files
// at all reads nothing (an empty report).
Result<PageOutReport> PageOutFileMappings(const sys::Pidfd& process, const std::vector<std::string>& files);

}  // namespace cask::hypervisor
