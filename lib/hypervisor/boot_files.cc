#include "lib/hypervisor/boot_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <optional>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"

namespace cask::hypervisor {
namespace {

constexpr std::string_view kDeleted = " (deleted)";

// Parses a lowercase hex number that fills all of `s`.
std::optional<uint64_t> ParseHex(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

// Splits off the next field separated by spaces; empty at the end.
std::string_view NextField(std::string_view& line) {
  size_t b = line.find_first_not_of(' ');
  if (b == std::string_view::npos) {
    line = {};
    return {};
  }
  size_t e = line.find(' ', b);
  std::string_view f = line.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b);
  line = e == std::string_view::npos ? std::string_view{} : line.substr(e);
  return f;
}

// Reads at most `cap` bytes of a /proc file (its size reads as 0).
Result<std::string> ReadProcBounded(const std::string& path, size_t cap) {
  CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open(path, O_RDONLY));
  std::string out;
  char buf[65536];
  while (out.size() < cap) {
    ssize_t n = ::read(fd.get(), buf, std::min(sizeof buf, cap - out.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::Sys(errno, "read " + path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

uint64_t VmRssKib(pid_t pid) {
  auto text = ReadProcBounded("/proc/" + std::to_string(pid) + "/status", 64 * 1024);
  if (!text.ok()) return 0;
  size_t at = text->find("\nVmRSS:");
  if (at == std::string::npos) return 0;
  return std::strtoull(text->c_str() + at + 7, nullptr, 10);
}

}  // namespace

std::vector<std::string> BootFiles(const VmSettings& cfg) {
  if (!cfg.release_boot_files) return {};
  return {cfg.kernel, cfg.initrd};
}

std::vector<FileMapping> SelectFileMappings(std::string_view maps, const std::vector<std::string>& files) {
  std::vector<FileMapping> out;
  while (!maps.empty()) {
    size_t nl = maps.find('\n');
    std::string_view line = maps.substr(0, nl);
    maps = nl == std::string_view::npos ? std::string_view{} : maps.substr(nl + 1);
    // "start-end perms offset dev inode   path": the path is the rest of
    // the line after the fifth field and its padding (it may hold spaces).
    std::string_view range = NextField(line);
    for (int i = 0; i < 4; i++) NextField(line);  // perms offset dev inode
    size_t b = line.find_first_not_of(' ');
    if (b == std::string_view::npos) continue;  // anonymous
    std::string_view path = line.substr(b);
    size_t dash = range.find('-');
    if (dash == std::string_view::npos) continue;
    auto start = ParseHex(range.substr(0, dash)), end = ParseHex(range.substr(dash + 1));
    if (!start || !end || *end <= *start) continue;
    if (path.size() > kDeleted.size() && path.substr(path.size() - kDeleted.size()) == kDeleted)
      path.remove_suffix(kDeleted.size());
    for (const auto& f : files) {
      if (!f.empty() && path == f) {
        out.push_back(FileMapping{*start, *end, std::string(path)});
        break;
      }
    }
  }
  return out;
}

Result<PageOutReport> PageOutFileMappings(const sys::Pidfd& process, const std::vector<std::string>& files) {
  if (!process) return Error::FailedPrecondition("page out boot files: no pidfd");
  std::vector<std::string> canonical;
  for (const auto& f : files) {
    if (f.empty()) continue;
    char* r = ::realpath(f.c_str(), nullptr);
    canonical.push_back(r != nullptr ? std::string(r) : f);
    std::free(r);
  }
  if (canonical.empty()) return PageOutReport{};
  const std::string maps_path = "/proc/" + std::to_string(process.pid()) + "/maps";
  CASK_ASSIGN_OR_RETURN(std::string maps, ReadProcBounded(maps_path, kMaxMapsBytes));
  PageOutReport report;
  report.rss_before_kib = VmRssKib(process.pid());
  // Alive after the reads: the pid was still this process's while we read.
  if (!process.Alive())
    return Error::Sys(ESRCH, "page out boot files of pid " + std::to_string(process.pid()) + ": it exited");
  std::optional<Error> first;
  for (const auto& m : SelectFileMappings(maps, canonical)) {
    iovec iov{reinterpret_cast<void*>(static_cast<uintptr_t>(m.start)), static_cast<size_t>(m.end - m.start)};
    auto n = process.Madvise(&iov, 1, MADV_PAGEOUT);
    if (!n.ok()) {
      if (!first) first = std::move(n).error().Wrap("page out " + m.path);
      continue;
    }
    report.mappings++;
    report.mapped_bytes += m.end - m.start;
  }
  report.rss_after_kib = VmRssKib(process.pid());
  // The page-out evicted the files from the page cache too (no other
  // process mapped them); read them back in the background, unmapped, so
  // that the next VM's boot does not wait for the disk.
  for (const auto& f : report.mappings > 0 ? canonical : std::vector<std::string>{}) {
    auto fd = Open(f, O_RDONLY);
    if (fd.ok() && ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_WILLNEED) == 0) report.readahead_files++;
  }
  if (first) return std::move(*first);
  return report;
}

void ReleaseBootFilesLogged(Vm& vm, const Logger& log) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = vm.ReleaseBootFiles();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  if (r.ok() && r->mappings == 0 && r->rss_before_kib == 0) return;  // nothing asked (disabled)
  if (r.ok()) {
    log.Info("boot files released", {{"mappings", std::to_string(r->mappings)},
                                     {"mapped_kib", std::to_string(r->mapped_bytes / 1024)},
                                     {"vmm_rss_kib_before", std::to_string(r->rss_before_kib)},
                                     {"vmm_rss_kib_after", std::to_string(r->rss_after_kib)},
                                     {"readahead_files", std::to_string(r->readahead_files)},
                                     {"ms", std::to_string(ms)}});
  } else if (r.error().code() != Code::kUnimplemented) {
    log.Warn("release the boot files (the VM is unaffected)", {{"error", r.error().ToString()}});
  }
}

}  // namespace cask::hypervisor
