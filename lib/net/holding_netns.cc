#include "lib/net/holding_netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "lib/net/netns.h"

namespace cask::net {

Result<HoldingNetns> HoldingNetns::Create(const std::string& path) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!file) {
    int e = errno;
    return Error::Sys(e == EEXIST ? Code::kAlreadyExists : Code::kInternal, e, "create " + path);
  }
  file.Reset();
  // On a thread of its own: the caller stays where it is.
  Status made = RunInNewNetns([&]() -> Status {
    if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return Error::Sys(errno, "bind-mount the new network namespace on " + path);
    return Ok();
  });
  if (!made.ok()) {
    (void)::unlink(path.c_str());
    return std::move(made).error().Wrap("create a holding network namespace");
  }
  HoldingNetns h;
  h.path_ = path;
  h.fd_.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!h.fd_) {
    int e = errno;
    (void)h.Remove();
    return Error::Sys(e, "open the holding network namespace " + path);
  }
  return h;
}

HoldingNetns::~HoldingNetns() { (void)Remove(); }

HoldingNetns::HoldingNetns(HoldingNetns&& o) noexcept : path_(std::move(o.path_)), fd_(std::move(o.fd_)) {
  o.path_.clear();
}

HoldingNetns& HoldingNetns::operator=(HoldingNetns&& o) noexcept {
  if (this != &o) {
    (void)Remove();
    path_ = std::move(o.path_);
    fd_ = std::move(o.fd_);
    o.path_.clear();
  }
  return *this;
}

Status HoldingNetns::Remove() {
  fd_.Reset();
  if (path_.empty()) return Ok();
  std::string path = std::move(path_);
  path_.clear();
  return RemoveHoldingNetnsAt(path);
}

Status RemoveHoldingNetnsAt(const std::string& path) {
  struct statfs fs{};
  if (::statfs(path.c_str(), &fs) != 0) {
    if (errno == ENOENT) return Ok();
    return Error::Sys(errno, "statfs " + path);
  }
  if (fs.f_type == NSFS_MAGIC) {
    if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL)
      return Error::Sys(errno, "unmount the holding network namespace " + path);
  } else {
    // Not mounted (a crash between create and mount): only an empty
    // regular file is ours to remove.
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT ? Ok() : Error::Sys(errno, "stat " + path);
    if (!S_ISREG(st.st_mode) || st.st_size != 0)
      return Error::FailedPrecondition(path + " is not a holding network namespace; not removing it");
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::Sys(errno, "remove " + path);
  return Ok();
}

}  // namespace cask::net
