// Helpers shared by the scale test (sandbox_many_processes_test.cc) and the
// scale benchmark (bench/agent_scale.cc): a pod VM with one container and
// many exec'd processes whose stdio goes through host pipes and
// ProcessIoPumps, as the shim's would.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/fs.h"
#include "lib/base/result.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/process_io.h"
#include "lib/sandbox/sandbox.h"

namespace cask::e2e {

// One live process with stdio: the host ends of its pipes and its pump.
struct LiveProcess {
  std::string exec_id;
  UniqueFd stdin_w;   // host writes the process's stdin here
  UniqueFd stdout_r;  // host reads what the pump copied from its stdout
  UniqueFd stderr_r;
  std::unique_ptr<sandbox::ProcessIoPump> pump;
};

inline Result<std::pair<UniqueFd, UniqueFd>> Pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe2");
  return std::pair<UniqueFd, UniqueFd>{UniqueFd(p[0]), UniqueFd(p[1])};
}

// Execs `args` as `exec_id` in `cid` with stdin, stdout and stderr, pumped
// through host pipes.
inline Result<LiveProcess> StartLive(sandbox::AgentClient& agent, const std::string& cid, const std::string& exec_id,
                                     std::vector<std::string> args) {
  oci::Process p;
  p.args = std::move(args);
  p.env = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin"};
  p.cwd = "/";
  CASK_ASSIGN_OR_RETURN(auto in, Pipe());
  CASK_ASSIGN_OR_RETURN(auto out, Pipe());
  CASK_ASSIGN_OR_RETURN(auto err, Pipe());
  auto pid = agent.ExecProcess(cid, exec_id, p, /*stdin=*/true);
  if (!pid.ok()) return std::move(pid).error().Wrap("exec " + exec_id);
  sandbox::ProcessIoFds fds;
  fds.stdin_fd = std::move(in.first);
  fds.stdout_fd = std::move(out.second);
  fds.stderr_fd = std::move(err.second);
  LiveProcess lp;
  lp.exec_id = exec_id;
  lp.stdin_w = std::move(in.second);
  lp.stdout_r = std::move(out.first);
  lp.stderr_r = std::move(err.first);
  CASK_ASSIGN_OR_RETURN(lp.pump, sandbox::ProcessIoPump::Start(agent, cid, exec_id, std::move(fds)));
  return lp;
}

// Reads from `fd` until `want` bytes arrived, EOF, or `timeout`.
inline std::string ReadSome(int fd, size_t want, std::chrono::milliseconds timeout) {
  std::string got;
  auto end = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (got.size() < want) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = ::read(fd, buf, std::min(sizeof buf, want - got.size()));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// "Threads:" and "VmRSS:" (bytes) of /proc/<pid>/status ("self" for us).
struct ProcUsage {
  uint64_t threads = 0;
  uint64_t rss_bytes = 0;
};
inline ProcUsage Usage(const std::string& pid = "self") {
  ProcUsage u;
  auto text = ReadFile("/proc/" + pid + "/status");
  if (!text.ok()) return u;
  size_t pos = 0;
  while (pos < text->size()) {
    size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) nl = text->size();
    std::string line = text->substr(pos, nl - pos);
    pos = nl + 1;
    if (line.rfind("Threads:", 0) == 0) u.threads = std::strtoull(line.c_str() + 8, nullptr, 10);
    if (line.rfind("VmRSS:", 0) == 0) u.rss_bytes = std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return u;
}

}  // namespace cask::e2e
