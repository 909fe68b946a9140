#include "lib/shim/main.h"

#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "lib/base/fs.h"
#include "lib/shim/delete.h"
#include "lib/shim/start.h"

namespace cask::shim {
namespace {

std::string Cwd() {
  char buf[PATH_MAX];
  if (::getcwd(buf, sizeof(buf)) == nullptr) return "";
  return buf;
}

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

std::string ReadAllStdin() {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      if (out.size() > (1u << 20)) break;  // options are tiny; never read unbounded input
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  return out;
}

int Fail(const Error& e) {
  std::string msg = e.ToString() + "\n";
  (void)WriteAll(STDERR_FILENO, msg);
  return 1;
}

}  // namespace

int Main(int argc, char** argv, const ServiceFactory& factory, const CleanupHook& cleanup) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  auto flags = ParseFlags(args);
  if (!flags.ok()) return Fail(flags.error());
  if (flags->version) {
    std::string v = std::string(argc > 0 ? Basename(argv[0]) : "containerd-shim-cask-v2") + ":\n  Version: " +
                    kVersion + "\n";
    (void)WriteAll(STDOUT_FILENO, v);
    return 0;
  }
  switch (flags->action) {
    case Action::kStart: {
      StartParams p{*flags, Cwd(), SelfExe(), ReadAllStdin()};
      auto addr = RunStart(p);
      if (!addr.ok()) return Fail(addr.error());
      return WriteAll(STDOUT_FILENO, *addr).ok() ? 0 : 1;
    }
    case Action::kDelete: {
      std::string bundle = flags->bundle.empty() ? Cwd() : flags->bundle;
      auto out = RunDelete(*flags, bundle, cleanup);
      if (!out.ok()) return Fail(out.error());
      if (!out->warnings.empty()) (void)WriteAll(STDERR_FILENO, out->warnings);
      return WriteAll(STDOUT_FILENO, out->response).ok() ? 0 : 1;
    }
    case Action::kDaemon: {
      const char* ttrpc = std::getenv("TTRPC_ADDRESS");
      DaemonParams p{*flags, Cwd(), ttrpc ? ttrpc : "", 3};
      return RunDaemon(p, factory);
    }
  }
  return 1;
}

}  // namespace cask::shim
