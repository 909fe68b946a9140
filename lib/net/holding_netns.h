// HoldingNetns: a network namespace of its own that nothing but its TAPs
// live in, kept alive by a bind mount of its nsfs file on a path (as
// `ip netns add` does) and by an open fd. The pool of ready VMs (lib/pool)
// keeps one under its state directory and creates each ready VM's TAP in
// it, so that no TAP of an idle VM is ever in the host's namespace.
//
// Ownership: the HoldingNetns owns the mount and the file. Remove() (also
// run by the destructor) detaches the mount and unlinks the file; the
// namespace itself ends once the last fd and the last TAP in it are gone
// (a TAP's fd holds a reference, so a TAP that QEMU still uses keeps it,
// and the TAP is deleted with the namespace when QEMU exits). A process
// that dies without Remove() leaves the mount: RemoveHoldingNetnsAt()
// takes it away (a successor's cleanup does). Thread safety: none.
#pragma once

#include <string>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::net {

class HoldingNetns {
 public:
  // Makes a new network namespace (its loopback down) and bind-mounts it
  // on `path`, which must not exist (ALREADY_EXISTS); its directory must.
  // On error nothing is left.
  static Result<HoldingNetns> Create(const std::string& path);
  HoldingNetns() = default;
  ~HoldingNetns();
  HoldingNetns(HoldingNetns&& o) noexcept;
  HoldingNetns& operator=(HoldingNetns&& o) noexcept;

  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

  // Detaches the mount, unlinks the file, closes the fd. Idempotent.
  Status Remove();

 private:
  std::string path_;
  UniqueFd fd_;
};

// Removes a holding namespace's mount and file at `path` (a predecessor's
// that was not removed). Missing is fine; a path that is not a namespace
// file (nor an empty regular file) is refused (FAILED_PRECONDITION).
Status RemoveHoldingNetnsAt(const std::string& path);

}  // namespace cask::net
