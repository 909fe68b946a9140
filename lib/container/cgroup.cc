#include "lib/container/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cinttypes>
#include <set>
#include <sstream>
#include <thread>

#include "lib/base/fs.h"

namespace cask::container {
namespace {

constexpr uint64_t kDefaultCpuPeriod = 100000;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool ParseU64(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool IsCgroup2(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

// Writes "+ctrl" into subtree_control of `root` and of every cgroup2
// ancestor, top down, for each wanted controller the level offers. Failures
// are not errors here: a missing controller shows up later as a missing
// file, with a message naming it.
void EnableControllers(const std::string& root, const std::vector<std::string>& wanted) {
  std::vector<std::string> chain;
  for (std::string dir = root; IsCgroup2(dir); dir = Dirname(dir)) {
    chain.push_back(dir);
    if (dir == "/" || Dirname(dir) == dir) break;
  }
  std::reverse(chain.begin(), chain.end());
  for (const auto& dir : chain) {
    auto available = ReadFile(JoinPath(dir, "cgroup.controllers"));
    auto enabled = ReadFile(JoinPath(dir, "cgroup.subtree_control"));
    if (!available.ok() || !enabled.ok()) continue;
    std::set<std::string> avail, on;
    std::istringstream a(*available), e(*enabled);
    for (std::string w; a >> w;) avail.insert(w);
    for (std::string w; e >> w;) on.insert(w);
    for (const auto& c : wanted) {
      if (avail.count(c) == 0 || on.count(c) != 0) continue;
      (void)WriteFile(JoinPath(dir, "cgroup.subtree_control"), "+" + c);
    }
  }
}

std::string Int(int64_t v) { return v < 0 ? "max" : std::to_string(v); }

}  // namespace

uint64_t CpuSharesToWeight(uint64_t shares) {
  if (shares == 0) return 0;
  shares = std::clamp<uint64_t>(shares, 2, 262144);
  return 1 + ((shares - 2) * 9999) / 262142;
}

uint64_t BlkioWeightToIoWeight(uint64_t weight) {
  if (weight == 0) return 0;
  weight = std::clamp<uint64_t>(weight, 10, 1000);
  return 1 + ((weight - 10) * 9999) / 990;
}

Result<std::optional<int64_t>> SwapToCgroupV2(int64_t swap, std::optional<int64_t> memory) {
  int64_t mem = memory.value_or(0);
  // Unlimited memory with no swap setting means unlimited swap too (the
  // cgroup v1 meaning of memory.memsw).
  if (mem == -1 && swap == 0) return std::optional<int64_t>(-1);
  if (swap == -1) return std::optional<int64_t>(-1);
  if (swap == 0) return std::optional<int64_t>();
  if (mem == 0 || mem == -1) {
    return Error::InvalidArgument("memory.swap " + std::to_string(swap) +
                                  " needs a memory limit");
  }
  if (mem < 0 || swap < 0) return Error::InvalidArgument("negative memory or swap limit");
  if (swap < mem) {
    return Error::InvalidArgument("memory.swap (memory+swap, " + std::to_string(swap) +
                                  ") is below the memory limit " + std::to_string(mem));
  }
  return std::optional<int64_t>(swap - mem);
}

Result<std::vector<CgroupWrite>> ResourceWrites(const oci::LinuxResources& r) {
  std::vector<CgroupWrite> w;
  if (r.cpu) {
    const auto& c = *r.cpu;
    if (c.realtime_runtime.value_or(0) != 0 || c.realtime_period.value_or(0) != 0) {
      return Error::InvalidArgument("cpu realtime runtime/period are not supported by cgroup v2");
    }
    if (c.shares.value_or(0) != 0) {
      w.push_back({"cpu.weight", std::to_string(CpuSharesToWeight(*c.shares))});
    }
    if (c.quota || c.period) {
      std::string quota = c.quota.value_or(0) > 0 ? std::to_string(*c.quota) : "max";
      uint64_t period = c.period.value_or(0) != 0 ? *c.period : kDefaultCpuPeriod;
      w.push_back({"cpu.max", quota + " " + std::to_string(period)});
    }
    if (!c.cpus.empty()) w.push_back({"cpuset.cpus", c.cpus});
    if (!c.mems.empty()) w.push_back({"cpuset.mems", c.mems});
  }
  if (r.memory) {
    const auto& m = *r.memory;
    // cgroup v2 has no kernel memory, swappiness or oom-killer switch;
    // like runc those v1 settings are ignored.
    if (m.limit.value_or(0) != 0) w.push_back({"memory.max", Int(*m.limit)});
    if (m.reservation.value_or(0) != 0) w.push_back({"memory.low", Int(*m.reservation)});
    CASK_ASSIGN_OR_RETURN(std::optional<int64_t> swap, SwapToCgroupV2(m.swap.value_or(0), m.limit));
    if (swap) w.push_back({"memory.swap.max", Int(*swap), /*optional=*/true});
  }
  if (r.pids) {
    w.push_back({"pids.max", r.pids->limit > 0 ? std::to_string(r.pids->limit) : "max"});
  }
  if (r.block_io && r.block_io->weight.value_or(0) != 0) {
    w.push_back({"io.weight", "default " + std::to_string(BlkioWeightToIoWeight(*r.block_io->weight))});
  }
  for (const auto& h : r.hugepage_limits) {
    if (h.page_size.empty() || h.page_size.find('/') != std::string::npos) {
      return Error::InvalidArgument("bad hugepage size \"" + h.page_size + "\"");
    }
    w.push_back({"hugetlb." + h.page_size + ".max", std::to_string(h.limit), /*optional=*/true});
  }
  for (const auto& [key, value] : r.unified) {
    if (key.empty() || key.find('/') != std::string::npos || key[0] == '.' ||
        key.find('.') == std::string::npos) {
      return Error::InvalidArgument("bad cgroup unified key \"" + key + "\"");
    }
    if (key == "cgroup.procs" || key == "cgroup.threads" || key == "cgroup.kill" ||
        key == "cgroup.freeze" || key == "cgroup.subtree_control") {
      return Error::InvalidArgument("cgroup unified key \"" + key + "\" is managed by the runtime");
    }
    w.push_back({key, value});
  }
  // Device rules (r.devices) are no file on cgroup v2: Container attaches
  // them as a BPF program (device_filter.h).
  return w;
}

std::map<std::string, uint64_t> ParseFlatKeyed(const std::string& text) {
  std::map<std::string, uint64_t> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string key, value;
    uint64_t v = 0;
    if (l >> key >> value && ParseU64(value, &v)) out[key] = v;
  }
  return out;
}

uint64_t ParseMaxValue(const std::string& text) {
  uint64_t v = 0;
  std::string t = Trim(text);
  if (t == "max" || !ParseU64(t, &v)) return 0;
  return v;
}

std::vector<sys::CgroupStats::Io> ParseIoStat(const std::string& text) {
  std::vector<sys::CgroupStats::Io> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string dev;
    if (!(l >> dev)) continue;
    sys::CgroupStats::Io io;
    if (sscanf(dev.c_str(), "%" SCNu64 ":%" SCNu64, &io.major, &io.minor) != 2) continue;
    for (std::string kv; l >> kv;) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos) continue;
      uint64_t v = 0;
      if (!ParseU64(kv.substr(eq + 1), &v)) continue;
      std::string k = kv.substr(0, eq);
      if (k == "rbytes") io.rbytes = v;
      else if (k == "wbytes") io.wbytes = v;
      else if (k == "rios") io.rios = v;
      else if (k == "wios") io.wios = v;
    }
    out.push_back(io);
  }
  return out;
}

Result<Cgroup> Cgroup::Create(const std::string& root, const std::string& id) {
  if (id.empty() || id == "." || id == ".." || id.find('/') != std::string::npos) {
    return Error::InvalidArgument("bad cgroup name \"" + id + "\"");
  }
  CASK_TRY(MkdirAll(root).Context("cgroup root"));
  if (!IsCgroup2(root)) {
    return Error::FailedPrecondition("cgroup root " + root + " is not on a cgroup2 file system");
  }
  EnableControllers(root, {"cpu", "cpuset", "io", "memory", "pids", "hugetlb"});
  std::string path = JoinPath(root, id);
  if (mkdir(path.c_str(), 0755) != 0) return Error::Sys(errno, "create cgroup " + path);
  return Cgroup(path);
}

std::string Cgroup::File(std::string_view name) const { return JoinPath(path_, name); }

Status Cgroup::Apply(const oci::LinuxResources& r) const {
  CASK_ASSIGN_OR_RETURN(std::vector<CgroupWrite> writes, ResourceWrites(r));
  for (const auto& w : writes) {
    std::string file = File(w.file);
    int fd = open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT && w.optional) continue;
      if (err == ENOENT) {
        std::string ctrl = w.file.substr(0, w.file.find('.'));
        return Error::FailedPrecondition("cgroup file " + w.file + " does not exist (controller " +
                                         ctrl + " not available in " + path_ + ")");
      }
      return Error::Sys(err, "open " + file);
    }
    UniqueFd owner(fd);
    if (write(fd, w.value.data(), w.value.size()) < 0) {
      return Error::Sys(errno, "write \"" + w.value + "\" to " + file);
    }
  }
  return Ok();
}

Status Cgroup::AddProcess(pid_t pid) const {
  return WriteFile(File("cgroup.procs"), std::to_string(pid)).Context("join cgroup " + path_);
}

Result<std::vector<pid_t>> Cgroup::Procs() const {
  CASK_ASSIGN_OR_RETURN(std::string text, ReadFile(File("cgroup.procs")));
  std::vector<pid_t> pids;
  std::istringstream in(text);
  for (long p; in >> p;) pids.push_back(static_cast<pid_t>(p));
  return pids;
}

Status Cgroup::Freeze(bool frozen, std::chrono::milliseconds timeout) const {
  std::string freeze = File("cgroup.freeze");
  if (!PathExists(freeze)) {
    return Error::FailedPrecondition("cgroup " + path_ + " has no cgroup.freeze (kernel < 5.2?)");
  }
  CASK_TRY(WriteFile(freeze, frozen ? "1" : "0"));
  const std::string want = frozen ? "frozen 1" : "frozen 0";
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    CASK_ASSIGN_OR_RETURN(std::string events, ReadFile(File("cgroup.events")));
    if (events.find(want) != std::string::npos) return Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      return Error::DeadlineExceeded(std::string("cgroup ") + path_ + " did not become " +
                                     (frozen ? "frozen" : "thawed"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Status Cgroup::Kill(int sig) const {
  if (sig == SIGKILL && PathExists(File("cgroup.kill"))) {
    return WriteFile(File("cgroup.kill"), "1").Context("kill cgroup " + path_);
  }
  // Without cgroup.kill, freeze the cgroup so nothing forks between reading
  // cgroup.procs and signalling (SIGKILL reaches frozen tasks).
  bool froze = sig == SIGKILL && Freeze(true, std::chrono::milliseconds(1000)).ok();
  CASK_ASSIGN_OR_RETURN(std::vector<pid_t> pids, Procs());
  Status st;
  for (pid_t p : pids) {
    if (kill(p, sig) != 0 && errno != ESRCH && st.ok()) {
      st = Error::Sys(errno, "kill " + std::to_string(p));
    }
  }
  if (froze) (void)Freeze(false, std::chrono::milliseconds(1000));
  return st;
}

Result<sys::CgroupStats> Cgroup::Stats() const {
  if (!PathExists(path_)) return Error::NotFound("cgroup " + path_ + " does not exist");
  sys::CgroupStats s;
  auto read = [this](const char* name) { return ReadFile(File(name)); };
  if (auto t = read("cpu.stat"); t.ok()) s.cpu_stat = ParseFlatKeyed(*t);
  if (auto t = read("memory.current"); t.ok()) s.memory_current = ParseMaxValue(*t);
  if (auto t = read("memory.max"); t.ok()) s.memory_max = ParseMaxValue(*t);
  if (auto t = read("memory.swap.current"); t.ok()) s.memory_swap_current = ParseMaxValue(*t);
  if (auto t = read("memory.stat"); t.ok()) s.memory_stat = ParseFlatKeyed(*t);
  if (auto t = read("memory.events"); t.ok()) s.memory_events = ParseFlatKeyed(*t);
  if (auto t = read("pids.current"); t.ok()) s.pids_current = ParseMaxValue(*t);
  if (auto t = read("pids.max"); t.ok()) s.pids_max = ParseMaxValue(*t);
  if (auto t = read("io.stat"); t.ok()) s.io = ParseIoStat(*t);
  return s;
}

namespace {
// rmdir of a cgroup and its (empty) descendants, deepest first.
Status RemoveTree(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return errno == ENOENT ? Ok() : Error::Sys(errno, "opendir " + dir);
  std::vector<std::string> subdirs;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (e->d_type == DT_DIR && name != "." && name != "..") subdirs.push_back(name);
  }
  closedir(d);
  for (const auto& s : subdirs) CASK_TRY(RemoveTree(JoinPath(dir, s)));
  if (rmdir(dir.c_str()) != 0 && errno != ENOENT) return Error::Sys(errno, "rmdir " + dir);
  return Ok();
}
}  // namespace

Status Cgroup::Remove(std::chrono::milliseconds timeout) const {
  if (path_.empty() || !PathExists(path_)) return Ok();
  Status killed = Kill(SIGKILL);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto events = ReadFile(File("cgroup.events"));
    if (!events.ok() || events->find("populated 0") != std::string::npos) break;
    if (std::chrono::steady_clock::now() > deadline) {
      Error e = Error::DeadlineExceeded("processes of cgroup " + path_ + " did not exit in time");
      if (!killed.ok()) e.Wrap(killed.error().ToString());
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return RemoveTree(path_);
}

}  // namespace cask::container
