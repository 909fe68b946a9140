// shim_call: calls containerd's Task API on a shim socket directly, for the
// e2e tests of calls that ctr cannot make (ResizePty on a process without a
// terminal, Update).
//
//   shim_call SOCKET resize ID EXEC_ID WIDTH HEIGHT
//   shim_call SOCKET update ID RESOURCES_JSON
//
// Exit 0 on success; 1 with the ttrpc status on stderr otherwise; 2 on
// usage errors.
#include <google/protobuf/empty.pb.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "lib/rpc/client.h"
#include "lib/rpc/server.h"

namespace {

constexpr const char* kTask = "containerd.task.v2.Task";
constexpr const char* kResourcesType = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

int Usage() {
  std::fprintf(stderr,
               "usage: shim_call SOCKET resize ID EXEC_ID WIDTH HEIGHT\n"
               "       shim_call SOCKET update ID RESOURCES_JSON\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return Usage();
  std::string sock = argv[1];
  if (sock.rfind("unix://", 0) == 0) sock = sock.substr(7);
  const std::string op = argv[2];
  auto fd = cask::rpc::ConnectUnix(sock);
  if (!fd.ok()) {
    std::fprintf(stderr, "shim_call: %s\n", fd.error().ToString().c_str());
    return 1;
  }
  cask::rpc::Client client(std::move(fd).value());
  cask::Status st;
  if (op == "resize" && argc == 7) {
    ::containerd::task::v2::ResizePtyRequest r;
    r.set_id(argv[3]);
    r.set_exec_id(argv[4]);
    r.set_width(static_cast<uint32_t>(std::strtoul(argv[5], nullptr, 10)));
    r.set_height(static_cast<uint32_t>(std::strtoul(argv[6], nullptr, 10)));
    auto res = client.CallTyped<google::protobuf::Empty>(kTask, "ResizePty", r, std::chrono::seconds(30));
    if (!res.ok()) st = std::move(res).error();
  } else if (op == "update" && argc == 5) {
    ::containerd::task::v2::UpdateTaskRequest r;
    r.set_id(argv[3]);
    r.mutable_resources()->set_type_url(kResourcesType);
    r.mutable_resources()->set_value(argv[4]);
    auto res = client.CallTyped<google::protobuf::Empty>(kTask, "Update", r, std::chrono::seconds(60));
    if (!res.ok()) st = std::move(res).error();
  } else {
    return Usage();
  }
  if (!st.ok()) {
    std::fprintf(stderr, "shim_call %s: %s\n", op.c_str(), st.error().ToString().c_str());
    return 1;
  }
  return 0;
}
