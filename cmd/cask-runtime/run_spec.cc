#include "cmd/cask-runtime/run_spec.h"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include "lib/base/fs.h"
#include "lib/oci/parse.h"

namespace cask::runtime {

namespace {

constexpr uint64_t kMinMemoryMib = 4;
constexpr uint64_t kMaxMemoryMib = uint64_t{1} << 30;  // keeps bytes in int64
constexpr uint32_t kMaxCpus = 255;
constexpr int64_t kCpuPeriodUs = 100'000;

Result<std::string> CheckedDirectory(const std::string& path, const std::string& what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;  // the contract: a missing path is NOT_FOUND
    return Error::Sys(err == ENOENT || err == ENOTDIR ? Code::kNotFound : Code::kInternal, err, what + " " + path);
  }
  if (!S_ISDIR(st.st_mode)) return Error::InvalidArgument(what + " " + path + ": not a directory");
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return Error::Sys(errno, what + " " + path);
  return std::string(buf);
}

Result<PreparedContainer> FromRootfs(const RunRequest& req) {
  if (req.command.empty())
    return Error::InvalidArgument("a command is required with --rootfs: cask-runtime run --rootfs DIR -- CMD [ARGS...]");
  PreparedContainer out;
  CASK_ASSIGN_OR_RETURN(out.rootfs, CheckedDirectory(req.rootfs, "--rootfs"));
  out.spec = oci::DefaultSpec(req.command, req.tty);
  out.spec.root = oci::Root{.path = out.rootfs, .readonly = false};
  out.readonly_rootfs = false;
  return out;
}

Result<PreparedContainer> FromBundle(const RunRequest& req) {
  PreparedContainer out;
  CASK_ASSIGN_OR_RETURN(std::string bundle, CheckedDirectory(req.bundle, "--bundle"));
  std::string config_path = JoinPath(bundle, "config.json");
  auto json = ReadFile(config_path);
  if (!json.ok()) return std::move(json).error().Wrap("bundle " + req.bundle + ": cannot read config.json");
  auto spec = oci::ParseSpec(*json);
  if (!spec.ok()) return std::move(spec).error().Wrap(config_path);
  out.spec = std::move(*spec);
  if (!out.spec.root || out.spec.root->path.empty())
    return Error::InvalidArgument(config_path + ": root.path: required");
  std::string root = out.spec.root->path;
  if (root.front() != '/') root = JoinPath(bundle, root);
  auto rootfs = CheckedDirectory(root, "root.path");
  if (!rootfs.ok()) return std::move(rootfs).error().Wrap(config_path);
  out.rootfs = *rootfs;
  out.readonly_rootfs = out.spec.root->readonly;
  if (!req.command.empty()) {
    if (!out.spec.process) out.spec.process = oci::DefaultSpec(req.command, req.tty).process;
    out.spec.process->args = req.command;
  }
  if (!out.spec.process)
    return Error::InvalidArgument(config_path + ": process: required (or give a command after --)");
  if (req.tty) out.spec.process->terminal = true;
  return out;
}

}  // namespace

Result<PreparedContainer> PrepareContainer(const RunRequest& req) {
  if (req.rootfs.empty() == req.bundle.empty())
    return Error::InvalidArgument("exactly one of --rootfs DIR or --bundle DIR is required");
  if (req.memory_mib && (*req.memory_mib < kMinMemoryMib || *req.memory_mib > kMaxMemoryMib))
    return Error::InvalidArgument("--memory " + std::to_string(*req.memory_mib) + ": must be between " +
                                  std::to_string(kMinMemoryMib) + " and " + std::to_string(kMaxMemoryMib) + " MiB");
  if (req.cpus && (*req.cpus < 1 || *req.cpus > kMaxCpus))
    return Error::InvalidArgument("--cpus " + std::to_string(*req.cpus) + ": must be between 1 and " +
                                  std::to_string(kMaxCpus));

  CASK_ASSIGN_OR_RETURN(PreparedContainer out, req.rootfs.empty() ? FromBundle(req) : FromRootfs(req));
  oci::Spec& spec = out.spec;
  if (!req.hostname.empty()) spec.hostname = req.hostname;
  if (req.memory_mib || req.cpus) {
    if (!spec.linux) spec.linux = oci::Linux{};
    if (!spec.linux->resources) spec.linux->resources = oci::LinuxResources{};
    auto& res = *spec.linux->resources;
    if (req.memory_mib) {
      if (!res.memory) res.memory = oci::MemoryResources{};
      res.memory->limit = static_cast<int64_t>(*req.memory_mib) * 1024 * 1024;
    }
    if (req.cpus) {
      if (!res.cpu) res.cpu = oci::CpuResources{};
      res.cpu->period = static_cast<uint64_t>(kCpuPeriodUs);
      res.cpu->quota = static_cast<int64_t>(*req.cpus) * kCpuPeriodUs;
    }
  }
  // The options above may have changed the spec: validate the result.
  auto valid = oci::Validate(spec);
  if (!valid.ok()) return std::move(valid).error().Wrap("the container spec");
  return out;
}

}  // namespace cask::runtime
