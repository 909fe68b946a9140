#include "lib/sandbox/host_mounts.h"

namespace cask::sandbox {

namespace {

class KernelMounts final : public HostMounts {
 public:
  Result<std::unique_ptr<Share>> CreateShare(const std::string& host_dir, const std::string& export_dir) override {
    CASK_ASSIGN_OR_RETURN(auto d, SharedDir::Create(host_dir, export_dir));
    return std::unique_ptr<Share>(std::move(d));
  }
  Status MountRootfs(const std::vector<MountSpec>& mounts, const std::string& target) override {
    return MountRootfsStack(mounts, target);
  }
  Status UnmountRootfs(const std::string& target) override { return UnmountStack(target); }
};

}  // namespace

std::shared_ptr<HostMounts> RealHostMounts() { return std::make_shared<KernelMounts>(); }

}  // namespace cask::sandbox
