// Helpers shared by the lib/sandbox end-to-end tests (sandbox_exec_test.cc,
// sandbox_many_processes_test.cc) and the scale benchmark
// (bench/agent_scale.cc): a pod VM with one container and many exec'd
// processes whose stdio goes through host pipes and ProcessIoPumps on the
// sandbox's loop, as the shim's would; and (for the gtest suites, which
// define CASK_E2E_DIR) the fixture that boots that VM.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/base/result.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/container.h"
#include "lib/sandbox/process_io.h"
#include "lib/sandbox/sandbox.h"

#ifdef CASK_E2E_DIR
#include <gtest/gtest.h>
#endif

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
// through host pipes by the sandbox's stdio loop.
inline Result<LiveProcess> StartLive(sandbox::Sandbox& sb, const std::string& cid, const std::string& exec_id,
                                     std::vector<std::string> args) {
  sandbox::AgentClient& agent = sb.agent();
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
  CASK_ASSIGN_OR_RETURN(lp.pump, sandbox::ProcessIoPump::Start(sb.io_loop(), cid, exec_id, std::move(fds)));
  return lp;
}

// One live exec of a sandbox::Container, as the shim and `cask-runtime`
// run them: its pump and exit delivery belong to the Container.
struct LiveExec {
  std::string exec_id;
  UniqueFd stdin_w;
  UniqueFd stdout_r;
  UniqueFd stderr_r;
  std::shared_ptr<sandbox::Process> proc;
};

// The shape of an exec's process for these suites.
inline oci::Process ExecProcessSpec(std::vector<std::string> args) {
  oci::Process p;
  p.args = std::move(args);
  p.env = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin"};
  p.cwd = "/";
  return p;
}

// Adds and starts exec `exec_id` of `c` running `args`, with stdin, stdout
// and stderr through host pipes.
inline Result<LiveExec> StartLiveExec(sandbox::Container& c, const std::string& exec_id,
                                      std::vector<std::string> args) {
  CASK_ASSIGN_OR_RETURN(auto in, Pipe());
  CASK_ASSIGN_OR_RETURN(auto out, Pipe());
  CASK_ASSIGN_OR_RETURN(auto err, Pipe());
  LiveExec le;
  le.exec_id = exec_id;
  CASK_ASSIGN_OR_RETURN(le.proc, c.AddExec(exec_id, ExecProcessSpec(std::move(args))));
  sandbox::ProcessIoFds fds;
  fds.stdin_fd = std::move(in.first);
  fds.stdout_fd = std::move(out.second);
  fds.stderr_fd = std::move(err.second);
  le.stdin_w = std::move(in.second);
  le.stdout_r = std::move(out.first);
  le.stderr_r = std::move(err.first);
  auto pid = c.Start(*le.proc, std::move(fds));
  if (!pid.ok()) return std::move(pid).error().Wrap("start exec " + exec_id);
  return le;
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

#ifdef CASK_E2E_DIR
// A pod VM for an end-to-end suite: SetUp builds a busybox rootfs and boots
// the sandbox (skipping without root or guest assets); TearDown destroys it
// and checks that nothing is left (no VMM, no mount, no state). Suites set
// the options in their constructor.
class PodVmTest : public ::testing::Test {
 protected:
  struct VmOptions {
    std::string id;        // sandbox id
    std::string hostname;  // guest hostname
    uint32_t memory_mib = 0;  // 0: the default
  };
  explicit PodVmTest(VmOptions o) : vm_opts_(std::move(o)) {}

  static std::string GuestDir() {
    const char* e = std::getenv("CASK_GUEST_DIR");
    return e ? e : CASK_GUEST_DIR;
  }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (!PathExists(GuestDir() + "/vmlinux") || !PathExists(GuestDir() + "/initrd.img"))
      GTEST_SKIP() << "guest assets missing in " << GuestDir() << " (ninja guest-assets)";
    std::string tmpl_s = "/tmp/cask-e2e-" + vm_opts_.id + ".XXXXXX";
    std::vector<char> tmpl(tmpl_s.begin(), tmpl_s.end());
    tmpl.push_back('\0');
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl.data();
    rootfs_ = dir_ + "/rootfs";
    SpawnOptions so;
    so.stdout_fd = 2;
    so.stderr_fd = 2;
    auto mk = Spawn({"/bin/bash", CASK_E2E_DIR "/make-rootfs.sh", rootfs_}, so);
    ASSERT_TRUE(mk.ok()) << mk.error().ToString();
    auto st = mk->Wait();
    ASSERT_TRUE(st.ok() && *st == 0) << "make-rootfs.sh failed";

    sandbox::SandboxOptions o;
    o.id = vm_opts_.id;
    o.config.hypervisor.kernel = GuestDir() + "/vmlinux";
    o.config.hypervisor.initrd = GuestDir() + "/initrd.img";
    if (vm_opts_.memory_mib) o.config.hypervisor.memory_mib = vm_opts_.memory_mib;
    o.config.runtime.state_dir = dir_ + "/state";
    o.config.agent.connect_timeout_ms = 240'000;  // TCG on a busy machine
    o.hostname = vm_opts_.hostname;
    auto sb = sandbox::Sandbox::Create(std::move(o));
    ASSERT_TRUE(sb.ok()) << sb.error().ToString();
    sb_ = std::move(*sb);
    vmm_pid_ = sb_->vmm_pid();
  }

  void TearDown() override {
    BeforeDestroy();
    if (dir_.empty()) return;
    if (sb_) {
      auto st = sb_->Destroy();
      EXPECT_TRUE(st.ok()) << st.error().ToString();
      sb_.reset();
    }
    // Nothing may be left: VMM gone, no mount, no state.
    if (vmm_pid_ > 0) {
      EXPECT_NE(::kill(vmm_pid_, 0), 0) << "qemu " << vmm_pid_ << " still running";
    }
    auto mounts = sandbox::LiveMountPointsUnder(dir_);
    ASSERT_TRUE(mounts.ok());
    EXPECT_TRUE(mounts->empty()) << "left mounted: " << mounts->front();
    EXPECT_FALSE(PathExists(dir_ + "/state/" + vm_opts_.id));
    if (mounts->empty()) {
      EXPECT_TRUE(sandbox::RemoveTreeNoMounts(dir_).ok());
    }
  }
  // Runs first in TearDown: drop what must go before the VM (pumps).
  virtual void BeforeDestroy() {}

  // Creates and starts container `cid` running `args`, its stdio to nowhere.
  void StartContainer(const std::string& cid, std::vector<std::string> args) {
    auto rootfs = sb_->ShareRootfs(cid, rootfs_);
    ASSERT_TRUE(rootfs.ok()) << rootfs.error().ToString();
    oci::Spec spec = oci::DefaultSpec(args, false);
    if (!vm_opts_.hostname.empty()) spec.hostname = vm_opts_.hostname;
    auto spec2 = sb_->ShareMounts(cid, spec);
    ASSERT_TRUE(spec2.ok()) << spec2.error().ToString();
    auto pid = sb_->agent().CreateContainer(cid, *spec2, *rootfs, false);
    ASSERT_TRUE(pid.ok()) << pid.error().ToString();
    auto started = sb_->agent().StartContainer(cid);
    ASSERT_TRUE(started.ok()) << started.error().ToString();
  }

  const VmOptions vm_opts_;
  std::string dir_, rootfs_;
  std::shared_ptr<sandbox::Sandbox> sb_;  // shared: a sandbox::Container holds it too
  pid_t vmm_pid_ = -1;
};
#endif  // CASK_E2E_DIR

}  // namespace cask::e2e
