// A HostMounts for unit tests (host_mounts.h) that makes no mount, so the
// logic above the seam (Sandbox, Container, the shim's Task service) runs
// without root. It records every bind and rootfs stack, so a test can
// check that everything made was undone, and keeps what a reader of the
// share sees: a bind is a symlink to its source (so files read through
// shared/ are the source's) and shared/ is a symlink to mounts/. What it
// cannot show (read-only, nosuid, propagation, a bind that survives a
// swapped path) is tested against the kernel in shared_dir_test and
// rootfs_mount_test, as root.
//
// Errors follow the real contract: an absolute or dotted relative path is
// INVALID_ARGUMENT, a stacked bind ALREADY_EXISTS, an unsupported mount
// option INVALID_ARGUMENT, a missing bind source or target ENOENT.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/fs.h"
#include "lib/base/thread_annotations.h"
#include "lib/sandbox/host_mounts.h"
#include "lib/sys/mount_options.h"

namespace cask::sandbox::testing {

class FakeHostMounts : public HostMounts, public std::enable_shared_from_this<FakeHostMounts> {
 public:
  struct BindRecord {
    std::string source;
    bool readonly = false;
  };

  Result<std::unique_ptr<Share>> CreateShare(const std::string& host_dir, const std::string& export_dir) override;

  Status MountRootfs(const std::vector<MountSpec>& mounts, const std::string& target) override {
    struct stat st;
    if (::stat(target.c_str(), &st) != 0) return Error::Sys(errno, "mount onto " + target);
    for (const MountSpec& m : mounts) {
      std::string what = "mount " + m.type + " " + m.source + " onto " + target;
      CASK_ASSIGN_OR_RETURN(sys::MountOptions mo, sys::ParseMountOptions(m.options).Context(what));
      (void)mo;
      if ((m.type == "bind" || m.type == "none") && !PathExists(m.source)) return Error::Sys(ENOENT, what);
      MutexLock l(mu_);
      rootfs_[target].push_back(m);
    }
    return Ok();
  }
  Status UnmountRootfs(const std::string& target) override {
    MutexLock l(mu_);
    rootfs_.erase(target);
    return Ok();
  }

  // What is "mounted" now: binds plus rootfs mounts.
  size_t active() const {
    MutexLock l(mu_);
    size_t n = binds_.size();
    for (const auto& [t, stack] : rootfs_) n += stack.size();
    return n;
  }
  bool RootfsMounted(const std::string& target) const {
    MutexLock l(mu_);
    auto it = rootfs_.find(target);
    return it != rootfs_.end() && !it->second.empty();
  }
  std::map<std::string, BindRecord> binds() const {
    MutexLock l(mu_);
    return binds_;
  }

  // Used by the fake share.
  void AddBind(const std::string& path, BindRecord b) {
    MutexLock l(mu_);
    binds_[path] = std::move(b);
  }
  void DropBindsUnder(const std::string& path) {
    MutexLock l(mu_);
    for (auto it = binds_.begin(); it != binds_.end();) {
      if (it->first == path || it->first.rfind(path + "/", 0) == 0)
        it = binds_.erase(it);
      else
        ++it;
    }
  }

 private:
  mutable Mutex mu_;
  std::map<std::string, BindRecord> binds_ GUARDED_BY(mu_);                // mount point -> bind
  std::map<std::string, std::vector<MountSpec>> rootfs_ GUARDED_BY(mu_);  // target -> stack
};

class FakeShare final : public Share {
 public:
  FakeShare(std::shared_ptr<FakeHostMounts> owner, std::string host, std::string exp)
      : owner_(std::move(owner)), host_(std::move(host)), export_(std::move(exp)) {}
  ~FakeShare() override { (void)Teardown(); }

  const std::string& path() const override { return export_; }
  const std::string& host_path() const override { return host_; }

  Status Bind(const std::string& host_src, const std::string& rel, bool readonly) override {
    CASK_TRY(CheckShareRelative(rel));
    if (removed_) return Error::FailedPrecondition("the share is torn down");
    const std::string target = host_ + "/" + rel;
    struct stat st;
    if (::lstat(target.c_str(), &st) == 0) return Error::AlreadyExists(rel + " is already in the share");
    if (!PathExists(host_src)) return Error::Sys(ENOENT, "bind " + host_src);
    CASK_TRY(MkdirAll(Dirname(target), 0700));
    if (::symlink(host_src.c_str(), target.c_str()) != 0) return Error::Sys(errno, "symlink " + target);
    owner_->AddBind(target, {host_src, readonly});
    return Ok();
  }
  Result<bool> Exists(const std::string& rel) const override {
    CASK_TRY(CheckShareRelative(rel));
    struct stat st;
    return ::lstat((host_ + "/" + rel).c_str(), &st) == 0;
  }
  Status Remove(const std::string& rel) override {
    CASK_TRY(CheckShareRelative(rel));
    owner_->DropBindsUnder(host_ + "/" + rel);
    return RemoveAll(host_ + "/" + rel);
  }
  Status Teardown() override {
    if (removed_) return Ok();
    owner_->DropBindsUnder(host_);
    (void)::unlink(export_.c_str());
    CASK_TRY(RemoveAll(host_));
    removed_ = true;
    return Ok();
  }

 private:
  const std::shared_ptr<FakeHostMounts> owner_;
  const std::string host_, export_;
  bool removed_ = false;
};

inline Result<std::unique_ptr<Share>> FakeHostMounts::CreateShare(const std::string& host_dir,
                                                                   const std::string& export_dir) {
  for (const auto* p : {&host_dir, &export_dir})
    if (p->empty() || p->front() != '/') return Error::InvalidArgument("shared dir '" + *p + "' is not absolute");
  if (::mkdir(host_dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::Sys(errno, "mkdir " + host_dir);
  // An empty directory may be there already (the real contract).
  if (::rmdir(export_dir.c_str()) != 0 && errno != ENOENT) return Error::Sys(errno, "rmdir " + export_dir);
  if (::symlink(host_dir.c_str(), export_dir.c_str()) != 0) return Error::Sys(errno, "symlink " + export_dir);
  return std::unique_ptr<Share>(new FakeShare(shared_from_this(), host_dir, export_dir));
}

}  // namespace cask::sandbox::testing
