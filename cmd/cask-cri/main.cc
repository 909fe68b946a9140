// cask-cri: a CRI v1 client for a node's containerd, for operators debugging
// cask pods and for cask's end-to-end tests (Debian ships no crictl). Parses
// the command line (cli.h) and runs one command (commands.h).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

#include "cmd/cask-cri/cli.h"
#include "cmd/cask-cri/commands.h"

int main(int argc, char** argv) {
  using namespace cask::cri;
  CLI::App app{"cask-cri: talk CRI v1 to containerd (pods, containers, exec, logs, stats, images)"};
  app.set_version_flag("--version", "cask-cri " CASK_VERSION);
  Options o;
  BuildCli(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints help, version or the error
    return rc == 0 ? 0 : kExitUsage;
  }
  if (auto st = Finish(app, o, std::getenv(kEndpointEnv)); !st.ok()) {
    std::fprintf(stderr, "cask-cri: %s\n", st.error().ToString().c_str());
    return kExitUsage;
  }
  return Run(o, stdout, stderr);
}
