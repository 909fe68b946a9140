// End-to-end: lib/sandbox against a real VM and the real agent. A
// container runs `sleep`; processes exec'd into it must see the same pid
// namespace, hostname and filesystem; signals and exits come back with the
// containerd conventions; several containers share one VM; nothing is left
// afterwards.
//
// Needs root and the guest assets (CASK_GUEST_DIR, built by
// `ninja guest-assets`); skips otherwise.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "lib/base/fs.h"
#include "lib/base/process.h"
#include "lib/oci/parse.h"
#include "lib/sandbox/process_io.h"
#include "lib/sandbox/sandbox.h"
#include "tests/e2e/scale_helpers.h"

namespace cask::sandbox {
namespace {

using namespace std::chrono_literals;

struct ExecResult {
  int status = -1;
  std::string out, err;
};

class SandboxExecTest : public e2e::PodVmTest {
 protected:
  SandboxExecTest() : PodVmTest({"exec-test", "exec-host", 0}) {}

  // Runs `args` in container `cid` as exec `exec_id`, feeding `input` to its
  // stdin, and collects its output and exit status.
  ExecResult Exec(const std::string& cid, const std::string& exec_id, std::vector<std::string> args,
                  const std::string& input = "") {
    ExecResult r;
    oci::Process p;
    p.args = std::move(args);
    p.env = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin"};
    p.cwd = "/";
    bool want_stdin = !input.empty();
    auto pid = sb_->agent().ExecProcess(cid, exec_id, p, want_stdin);
    if (!pid.ok()) {
      ADD_FAILURE() << pid.error().ToString();
      return r;
    }
    std::string out_path = dir_ + "/" + exec_id + ".out", err_path = dir_ + "/" + exec_id + ".err",
                in_path = dir_ + "/" + exec_id + ".in";
    EXPECT_TRUE(WriteFile(in_path, input).ok());
    ProcessIoFds fds;
    if (want_stdin) fds.stdin_fd = Open(in_path, O_RDONLY).value();
    fds.stdout_fd = Open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600).value();
    fds.stderr_fd = Open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600).value();
    auto pump = ProcessIoPump::Start(sb_->io_loop(), cid, exec_id, std::move(fds));
    EXPECT_TRUE(pump.ok());
    auto exit = sb_->agent().WaitProcess(cid, exec_id);
    EXPECT_TRUE(exit.ok()) << exit.error().ToString();
    if (exit.ok()) r.status = exit->status;
    EXPECT_TRUE((*pump)->WaitDrainedFor(60s));
    pump->reset();
    r.out = ReadFile(out_path).value();
    r.err = ReadFile(err_path).value();
    return r;
  }

};

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST_F(SandboxExecTest, ExecSeesTheContainersProcessesAndReportsStatuses) {
  StartContainer("c1", {"sleep", "1000"});
  auto pids = sb_->agent().ListProcesses("c1");
  ASSERT_TRUE(pids.ok()) << pids.error().ToString();
  ASSERT_EQ(pids->size(), 1u);

  // The exec is in the container's pid namespace: its init is `sleep`,
  // pid 1, and the exec itself is another pid of the same namespace.
  auto ps = Exec("c1", "ps", {"sh", "-c", "echo self=$$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep '^[0-9]*$'"});
  EXPECT_EQ(ps.status, 0) << ps.err;
  auto lines = Lines(ps.out);
  ASSERT_GE(lines.size(), 3u) << ps.out;
  EXPECT_NE(lines[0], "self=1") << ps.out;
  EXPECT_EQ(lines[1], "sleep 1000 ") << ps.out;
  EXPECT_NE(std::find(lines.begin(), lines.end(), "1"), lines.end()) << ps.out;

  // Same hostname and filesystem; the agent's files are not visible.
  auto env = Exec("c1", "env", {"sh", "-c", "hostname; test -e /init || echo no-init; test -e /bin/busybox && echo rootfs-ok"});
  EXPECT_EQ(env.status, 0) << env.err;
  EXPECT_EQ(env.out, "exec-host\nno-init\nrootfs-ok\n");

  // While the exec runs, the container has two processes (or more).
  auto during = Exec("c1", "count", {"sh", "-c", "ls /proc | grep -c '^[0-9]*$'"});
  EXPECT_EQ(during.status, 0);
  EXPECT_GE(std::atoi(during.out.c_str()), 2) << during.out;

  // Exit statuses, stderr and stdin of execs.
  EXPECT_EQ(Exec("c1", "exit5", {"sh", "-c", "echo oops >&2; exit 5"}).status, 5);
  EXPECT_EQ(Exec("c1", "stderr", {"sh", "-c", "echo oops >&2"}).err, "oops\n");
  auto cat = Exec("c1", "cat", {"cat"}, "ping\n");
  EXPECT_EQ(cat.status, 0);
  EXPECT_EQ(cat.out, "ping\n");
  auto killed = Exec("c1", "self-kill", {"sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.status, 137);

  // A missing executable: the exec fails (at exec or start), naming it.
  oci::Process missing;
  missing.args = {"/bin/no-such-binary"};
  missing.cwd = "/";
  auto bad = sb_->agent().ExecProcess("c1", "missing", missing, false);
  if (bad.ok()) {
    auto w = sb_->agent().WaitProcess("c1", "missing");
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->status, 127);
  } else {
    EXPECT_NE(bad.error().ToString().find("no-such-binary"), std::string::npos) << bad.error().ToString();
  }

  // SIGKILL from outside the container's pid namespace kills its init.
  ASSERT_TRUE(sb_->agent().SignalProcess("c1", "", SIGKILL).ok());
  auto init_exit = sb_->agent().WaitProcess("c1", "");
  ASSERT_TRUE(init_exit.ok()) << init_exit.error().ToString();
  EXPECT_EQ(init_exit->status, 137);
  // The container is stopped: no more execs.
  oci::Process late;
  late.args = {"true"};
  late.cwd = "/";
  EXPECT_FALSE(sb_->agent().ExecProcess("c1", "late", late, false).ok());

  ASSERT_TRUE(sb_->agent().RemoveContainer("c1", false).ok());
  ASSERT_TRUE(sb_->UnshareRootfs("c1").ok());
  EXPECT_FALSE(PathExists(sb_->dir() + "/shared/c1"));
}

TEST_F(SandboxExecTest, ContainersInOneVmAreIsolatedFromEachOther) {
  StartContainer("a", {"sleep", "1001"});
  StartContainer("b", {"sleep", "1002"});
  auto in_a = Exec("a", "look", {"sh", "-c", "cat /proc/*/cmdline | tr '\\0' ' '"});
  auto in_b = Exec("b", "look", {"sh", "-c", "cat /proc/*/cmdline | tr '\\0' ' '"});
  EXPECT_NE(in_a.out.find("sleep 1001"), std::string::npos) << in_a.out;
  EXPECT_EQ(in_a.out.find("sleep 1002"), std::string::npos) << in_a.out;
  EXPECT_NE(in_b.out.find("sleep 1002"), std::string::npos) << in_b.out;
  EXPECT_EQ(in_b.out.find("sleep 1001"), std::string::npos) << in_b.out;
  auto pa = sb_->agent().ListProcesses("a");
  auto pb = sb_->agent().ListProcesses("b");
  ASSERT_TRUE(pa.ok() && pb.ok());
  for (uint32_t p : *pa) EXPECT_EQ(std::find(pb->begin(), pb->end(), p), pb->end());
  // Removing a running container needs force; then its share goes.
  auto not_forced = sb_->agent().RemoveContainer("a", false);
  EXPECT_FALSE(not_forced.ok());
  ASSERT_TRUE(sb_->agent().RemoveContainer("a", true).ok()) ;
  ASSERT_TRUE(sb_->UnshareRootfs("a").ok());
  // Destroy (in TearDown) takes care of the still-running "b".
}

}  // namespace
}  // namespace cask::sandbox
