// containerd-shim-cask-v2: containerd's runtime v2 shim for cask
// (`ctr run --runtime io.containerd.cask.v2 ...`). All logic is in lib/shim.
#include "lib/shim/main.h"
#include "cmd/containerd-shim-cask-v2/task_adapter.h"
#include "cmd/containerd-shim-cask-v2/vm_record.h"

int main(int argc, char** argv) {
  return cask::shim::Main(argc, argv, cask::shim::NewCaskService, cask::shim::CleanupDeadVm);
}
