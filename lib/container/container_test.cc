// End-to-end tests of Container on this host: real namespaces, pivot_root,
// mounts and a busybox rootfs. They need root and /bin/busybox (static);
// they are skipped otherwise. The test process is a child subreaper so the
// container processes (grandchildren) are reparented to it, and it reaps
// them itself (in the guest, the agent's reaper does that).
#include "lib/container/container.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "lib/base/fs.h"
#include "lib/oci/default_seccomp.h"

namespace cask::container {
// setns(CLONE_NEWNS) and unshare(CLONE_NEWUSER) need a single-threaded
// caller, and ThreadSanitizer runs a helper thread in every process, the
// forked intermediate of a container included: these cases cannot run
// under it.
#if defined(__SANITIZE_THREAD__)
#define CASK_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CASK_TSAN_BUILD 1
#endif
#endif
#ifdef CASK_TSAN_BUILD
#define SKIP_UNDER_TSAN() GTEST_SKIP() << "setns/unshare need a single-threaded process; ThreadSanitizer adds a thread"
#else
#define SKIP_UNDER_TSAN() \
  do {                    \
  } while (0)
#endif

namespace {

const char* Busybox() {
  for (const char* p : {"/bin/busybox", "/usr/bin/busybox"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return nullptr;
}

std::string Cgroup2Root() {
  for (const char* p : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs st {};
    if (statfs(p, &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC) {
      return std::string(p) + "/cask-ctest-" + std::to_string(getpid());
    }
  }
  return "";
}

// Reaps children until `pid` exits; returns its wait status.
int WaitFor(pid_t pid) {
  for (;;) {
    int st = 0;
    pid_t got = waitpid(-1, &st, __WALL);
    if (got == pid) return st;
    if (got < 0 && errno == ECHILD) return -1;
  }
}

void ReapStragglers() {
  while (waitpid(-1, nullptr, __WALL | WNOHANG) > 0) {
  }
}

// Reaps children until none is left (true), or false if one still runs
// after `guard`: a killed child exits when the machine lets it, so this
// waits for the exits themselves; only a child nobody killed stays.
bool AllChildrenGone(std::chrono::seconds guard = std::chrono::seconds(30)) {
  auto deadline = std::chrono::steady_clock::now() + guard;
  for (;;) {
    pid_t r = waitpid(-1, nullptr, __WALL | WNOHANG);
    if (r > 0) continue;
    if (r < 0) return errno == ECHILD;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Reads until EOF or `timeout`; *eof (when given) tells which.
std::string ReadAll(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(20), bool* eof = nullptr) {
  std::string out;
  if (eof) *eof = false;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {  // EOF (or EIO on a pty master after the slave closed)
      if (eof) *eof = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

class ContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    const char* bb = Busybox();
    if (bb == nullptr) GTEST_SKIP() << "needs busybox";
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    char tmpl[] = "/tmp/cask-ctest-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(tmpl, 0755);  // reachable from a user namespace too
    rootfs_ = dir_ + "/rootfs";
    for (const char* d : {"", "/bin", "/proc", "/dev", "/sys", "/tmp", "/etc"}) {
      ASSERT_TRUE(MkdirAll(rootfs_ + d).ok());
    }
    ASSERT_TRUE(WriteFile(rootfs_ + "/etc/secret", "s3cret").ok());
    ASSERT_TRUE(MkdirAll(rootfs_ + "/etc/secretdir").ok());
    ASSERT_TRUE(WriteFile(rootfs_ + "/etc/secretdir/key", "k3y").ok());
    std::string cp = std::string("cp ") + bb + " " + rootfs_ + "/bin/busybox";
    ASSERT_EQ(system(cp.c_str()), 0);
    for (const char* app : {"sh", "echo", "cat", "hostname", "sleep", "id", "ls", "mkdir", "test", "touch",
                            "unshare"}) {
      ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/" + app).c_str()), 0);
    }
    cgroup_root_ = Cgroup2Root();
  }

  void TearDown() override {
    ReapStragglers();
    if (!dir_.empty()) {
      std::string rm = "rm -rf " + dir_;
      EXPECT_EQ(system(rm.c_str()), 0);
    }
    if (!cgroup_root_.empty()) rmdir(cgroup_root_.c_str());
  }

  oci::Spec BaseSpec(std::vector<std::string> args) {
    oci::Spec s;
    s.oci_version = "1.0.2";
    s.hostname = "cask-test";
    s.root = oci::Root{rootfs_, false};
    oci::Process p;
    p.args = std::move(args);
    p.env = {"PATH=/bin", "HOME=/"};
    p.cwd = "/";
    p.no_new_privileges = true;
    s.process = p;
    s.mounts = {
        {"/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}},
        {"/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}},
        {"/dev/pts", "devpts", "devpts",
         {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
        {"/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
        {"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}},
        {"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}},
        {"/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}},
    };
    oci::Linux lx;
    lx.namespaces = {{"pid", ""}, {"ipc", ""}, {"uts", ""}, {"mount", ""}, {"network", ""}};
    lx.masked_paths = {"/proc/kcore", "/proc/scsi", "/etc/secret", "/etc/secretdir"};
    lx.readonly_paths = {"/proc/sys", "/proc/sysrq-trigger"};
    s.linux = lx;
    return s;
  }

  CreateOptions Options(oci::Spec spec, std::string id = "c1") {
    CreateOptions o;
    o.no_pivot = no_pivot_;
    o.id = std::move(id);
    o.spec = std::move(spec);
    o.rootfs = rootfs_;
    o.cgroup_root = cgroup_root_;
    return o;
  }

  // Creates, starts, reads stdout+stderr and waits for the init.
  struct Run {
    std::string out, err;
    int status = -1;
  };
  Run CreateAndRun(oci::Spec spec) {
    Run r;
    ProcessIo io;
    PendingProcess init;
    auto c = Container::Create(Options(std::move(spec)), &io, &init);
    EXPECT_TRUE(c.ok()) << c.error().ToString();
    if (!c.ok()) return r;
    auto started = init.Start();
    EXPECT_TRUE(started.ok()) << started.error().ToString();
    r.out = ReadAll(io.stdout_r.get());
    r.err = ReadAll(io.stderr_r.get());
    r.status = WaitFor((*c)->init_pid());
    EXPECT_TRUE((*c)->Destroy().ok());
    return r;
  }

  std::string dir_, rootfs_, cgroup_root_;
  bool no_pivot_ = false;
};

TEST_F(ContainerTest, ShellIsPid1WithItsHostname) {
  auto r = CreateAndRun(BaseSpec({"sh", "-c", "echo $$; hostname; echo err >&2"}));
  EXPECT_EQ(r.out, "1\ncask-test\n");
  EXPECT_EQ(r.err, "err\n");
  ASSERT_TRUE(WIFEXITED(r.status));
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
}

TEST_F(ContainerTest, CgroupMountShowsTheContainersCgroup) {
  if (cgroup_root_.empty()) GTEST_SKIP() << "needs a cgroup2 mount";
  auto r = CreateAndRun(BaseSpec({"sh", "-c", "cat /sys/fs/cgroup/cgroup.procs; "
                                              "echo 1 > /sys/fs/cgroup/cgroup.procs || echo ro"}));
  EXPECT_EQ(r.out.substr(0, 2), "1\n") << r.out;
  EXPECT_NE(r.out.find("ro\n"), std::string::npos) << r.out;
}

TEST_F(ContainerTest, NoPivotMovesTheRootAndHidesOtherMounts) {
  no_pivot_ = true;
  auto r = CreateAndRun(BaseSpec({"sh", "-c", "echo $$; hostname; cat /proc/self/mountinfo"}));
  EXPECT_EQ(r.out.substr(0, 12), "1\ncask-test\n") << r.out;
  // The host's own mounts (e.g. its /sys/fs/cgroup hierarchies, /run) are
  // detached, not merely hidden below the new root.
  EXPECT_EQ(r.out.find(" /run "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("cgroup/memory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" /proc "), std::string::npos) << r.out;
  if (getenv("CASK_TEST_VERBOSE")) fprintf(stderr, "%s", r.out.c_str());
}

TEST_F(ContainerTest, ExecAfterNoPivotSeesTheContainerRoot) {
  SKIP_UNDER_TSAN();
  no_pivot_ = true;
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(BaseSpec({"sleep", "30"})), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE(init.Start().ok());
  oci::Process p;
  p.args = {"sh", "-c", "ls /; hostname"};
  p.env = {"PATH=/bin"};
  ProcessIo eio;
  auto exec = (*c)->Exec(p, false, &eio);
  ASSERT_TRUE(exec.ok()) << exec.error().ToString();
  auto pid = exec->Start();
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  std::string out = ReadAll(eio.stdout_r.get());
  EXPECT_NE(out.find("bin\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("usr\n"), std::string::npos) << out;  // the host root has /usr
  EXPECT_NE(out.find("cask-test\n"), std::string::npos) << out;
  WaitFor(*pid);
  ASSERT_TRUE((*c)->KillAll(SIGKILL).ok());
  WaitFor((*c)->init_pid());
}

TEST_F(ContainerTest, RootfsMountsDevicesAndMasks) {
  auto r = CreateAndRun(BaseSpec(
      {"sh", "-c",
       "ls /dev; readlink /dev/ptmx; echo x > /dev/null && echo null-ok; "
       "cat /etc/secret; echo masked=$?; cat /etc/secretdir/key || echo dir-masked; "
       "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo sys-ro; "
       "ls /proc/1/ns >/dev/null && echo proc-ok; "
       "test -e /old_root || echo no-old-root; touch2 2>/dev/null; "
       "mkdir /sys/x 2>/dev/null || echo sysfs-ro"}));
  for (const char* want : {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
                           "mqueue", "fd", "stdin", "stdout", "stderr", "ptmx"}) {
    EXPECT_NE(("\n" + r.out).find(std::string("\n") + want + "\n"), std::string::npos)
        << want << " missing in:\n" << r.out;
  }
  EXPECT_NE(r.out.find("pts/ptmx\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("null-ok\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("s3cret"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("masked=0\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("k3y"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dir-masked\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sys-ro\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("proc-ok\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sysfs-ro\n"), std::string::npos) << r.out;
}

TEST_F(ContainerTest, ReadonlyRootUserCapsAndSeccomp) {
  oci::Spec spec = BaseSpec({"sh", "-c",
                             "id -u; id -g; id -G; mkdir /tmp/d 2>&1; echo rc=$?; "
                             "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"});
  spec.root->readonly = true;
  spec.mounts.push_back({"/tmp", "tmpfs", "tmpfs", {"nosuid", "nodev", "mode=1777"}});
  spec.process->user = oci::User{1000, 1001, std::nullopt, {1002, 1003}};
  spec.process->capabilities = oci::Capabilities{
      {"CAP_KILL", "CAP_CHOWN"}, {"CAP_KILL"}, {"CAP_KILL"}, {"CAP_KILL"}, {"CAP_KILL"}};
  oci::Seccomp sec;
  sec.default_action = "SCMP_ACT_ALLOW";
  oci::SeccompSyscall deny;
  deny.names = {"mkdir", "mkdirat"};
  deny.action = "SCMP_ACT_ERRNO";
  deny.errno_ret = 1;  // EPERM
  sec.syscalls.push_back(deny);
  spec.linux->seccomp = sec;
  ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/grep").c_str()), 0);
  auto r = CreateAndRun(spec);
  EXPECT_NE(r.out.find("1000\n1001\n1001 1002 1003\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Operation not permitted"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rc=1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CapEff:\t0000000000000020"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CapBnd:\t0000000000000021"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NoNewPrivs:\t1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Seccomp:\t2"), std::string::npos) << r.out;
}

TEST_F(ContainerTest, NewUserNamespaceWithMappings) {
  SKIP_UNDER_TSAN();
  oci::Spec spec = BaseSpec({"sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map; hostname"});
  spec.linux->namespaces.push_back({"user", ""});
  spec.linux->uid_mappings = {{0, 100000, 65536}};
  spec.linux->gid_mappings = {{0, 100000, 65536}};
  auto r = CreateAndRun(spec);
  EXPECT_EQ(r.out.substr(0, 2), "0\n") << r.out << r.err;
  EXPECT_NE(r.out.find("100000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cask-test\n"), std::string::npos) << r.out;
}

TEST_F(ContainerTest, ExecJoinsTheUserNamespace) {
  SKIP_UNDER_TSAN();
  oci::Spec spec = BaseSpec({"sleep", "30"});
  spec.linux->namespaces.push_back({"user", ""});
  spec.linux->uid_mappings = {{0, 100000, 65536}};
  spec.linux->gid_mappings = {{0, 100000, 65536}};
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(spec), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE(init.Start().ok());
  oci::Process p;
  p.args = {"sh", "-c", "id -u; cat /proc/self/uid_map; hostname"};
  p.env = {"PATH=/bin"};
  p.user.uid = 5;
  ProcessIo eio;
  auto exec = (*c)->Exec(p, false, &eio);
  ASSERT_TRUE(exec.ok()) << exec.error().ToString();
  auto pid = exec->Start();
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  std::string out = ReadAll(eio.stdout_r.get());
  EXPECT_EQ(out.substr(0, 2), "5\n") << out << ReadAll(eio.stderr_r.get());
  EXPECT_NE(out.find("100000"), std::string::npos) << out;
  EXPECT_NE(out.find("cask-test\n"), std::string::npos) << out;
  WaitFor(*pid);
  ASSERT_TRUE((*c)->KillAll(SIGKILL).ok());
  WaitFor((*c)->init_pid());
}

TEST_F(ContainerTest, UserNamespaceWithoutNetnsBindsSysfs) {
  SKIP_UNDER_TSAN();
  oci::Spec spec = BaseSpec({"sh", "-c", "ls /sys/kernel >/dev/null && echo sys-ok"});
  spec.linux->namespaces = {{"pid", ""}, {"ipc", ""}, {"uts", ""}, {"mount", ""}, {"user", ""}};
  spec.linux->uid_mappings = {{0, 100000, 65536}};
  spec.linux->gid_mappings = {{0, 100000, 65536}};
  auto r = CreateAndRun(spec);
  EXPECT_EQ(r.out, "sys-ok\n") << r.err;
}

TEST_F(ContainerTest, SysctlRlimitsOomUmaskAndDevices) {
  oci::Spec spec = BaseSpec({"sh", "-c",
                             "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; "
                             "cat /proc/self/oom_score_adj; umask; "
                             "echo x > /dev/mynull && echo mynull-ok; ls -ln /dev/mynull"});
  spec.linux->sysctl["net.ipv4.ip_forward"] = "1";
  spec.process->rlimits = {{"RLIMIT_NOFILE", 1000, 900}};
  spec.process->oom_score_adj = 500;
  spec.process->user.umask = 077;
  oci::Device d;
  d.path = "/dev/mynull";
  d.type = "c";
  d.major = 1;
  d.minor = 3;
  d.file_mode = 0640;
  d.uid = 7;
  d.gid = 8;
  spec.linux->devices.push_back(d);
  ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/ls").c_str()) == 0 || errno == EEXIST, true);
  auto r = CreateAndRun(spec);
  EXPECT_NE(r.out.find("1\n900\n500\n0077\nmynull-ok\n"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("crw-r-----"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" 7 "), std::string::npos) << r.out;
}

TEST_F(ContainerTest, BadSysctlAndRlimitAreRejected) {
  ProcessIo io;
  PendingProcess init;
  oci::Spec spec = BaseSpec({"sh"});
  spec.linux->sysctl["../../etc/x"] = "1";
  auto c = Container::Create(Options(spec), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kInvalidArgument);
  spec = BaseSpec({"sh"});
  spec.process->rlimits = {{"RLIMIT_BANANAS", 1, 1}};
  c = Container::Create(Options(spec), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().ToString().find("RLIMIT_BANANAS"), std::string::npos);
  spec = BaseSpec({"sh"});
  spec.linux->sysctl["kernel.shm_no_such_knob"] = "1";
  c = Container::Create(Options(spec), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().ToString().find("sysctl kernel.shm_no_such_knob"), std::string::npos)
      << c.error().ToString();
  // A sysctl global to the kernel (the whole pod VM) is refused up front.
  spec = BaseSpec({"sh"});
  spec.linux->sysctl["kernel.panic"] = "1";
  c = Container::Create(Options(spec), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kInvalidArgument);
  EXPECT_NE(c.error().ToString().find("sysctl kernel.panic: not a namespaced sysctl"), std::string::npos)
      << c.error().ToString();
}

// Mount destinations that are symlinks in the image (Ubuntu's
// /etc/resolv.conf, /var/run -> /run) are followed inside the rootfs, even
// when the link dangles; links never lead outside it.
TEST_F(ContainerTest, MountDestinationsFollowSymlinksInsideTheRootfs) {
  ASSERT_EQ(symlink("../run/systemd/resolve/stub-resolv.conf", (rootfs_ + "/etc/resolv.conf").c_str()), 0);
  ASSERT_TRUE(MkdirAll(rootfs_ + "/var").ok());
  ASSERT_EQ(symlink("/run", (rootfs_ + "/var/run").c_str()), 0);
  ASSERT_EQ(symlink("/../../../../tmp", (rootfs_ + "/escape").c_str()), 0);
  ASSERT_TRUE(WriteFile(dir_ + "/resolv.conf", "nameserver 10.0.0.1\n").ok());
  oci::Spec spec = BaseSpec({"sh", "-c",
                             "cat /etc/resolv.conf; test -d /run/foo && echo foo-ok; "
                             "test -d /escape/inside && echo escape-inside"});
  spec.mounts.push_back({"/etc/resolv.conf", "bind", dir_ + "/resolv.conf", {"rbind", "ro"}});
  spec.mounts.push_back({"/var/run/foo", "tmpfs", "tmpfs", {}});
  spec.mounts.push_back({"/escape/inside", "tmpfs", "tmpfs", {}});
  auto r = CreateAndRun(spec);
  EXPECT_EQ(r.out, "nameserver 10.0.0.1\nfoo-ok\nescape-inside\n") << r.err;
  EXPECT_TRUE(PathExists(rootfs_ + "/run/systemd/resolve/stub-resolv.conf"));
  EXPECT_TRUE(PathExists(rootfs_ + "/tmp/inside"));
  EXPECT_FALSE(PathExists("/tmp/inside"));
}

TEST_F(ContainerTest, ReadonlyRootRejectsWrites) {
  oci::Spec spec = BaseSpec({"sh", "-c", "echo x > /newfile || echo ro-ok"});
  spec.root->readonly = true;
  auto r = CreateAndRun(spec);
  EXPECT_NE(r.out.find("ro-ok"), std::string::npos) << r.out << r.err;
  EXPECT_FALSE(PathExists(rootfs_ + "/newfile"));
}

TEST_F(ContainerTest, FailedMountIsReportedWithTheStep) {
  oci::Spec spec = BaseSpec({"sh"});
  spec.mounts.push_back({"/x", "nosuchfs", "none", {}});
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(spec), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().ToString().find("mount nosuchfs on /x: No such device"), std::string::npos)
      << c.error().ToString();
  EXPECT_EQ(init.pid(), -1);
  // The failed init was killed; nothing is left behind.
  EXPECT_TRUE(AllChildrenGone());
  if (!cgroup_root_.empty()) {
    EXPECT_FALSE(PathExists(cgroup_root_ + "/c1"));
  }
}

TEST_F(ContainerTest, BadSpecFailsBeforeAnything) {
  oci::Spec spec = BaseSpec({"sh"});
  spec.linux->namespaces = {{"pid", ""}, {"mount", ""}};  // hostname without uts
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(spec), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kInvalidArgument);

  spec = BaseSpec({"sh"});
  spec.process->capabilities = oci::Capabilities{{"CAP_BOGUS"}, {}, {}, {}, {}};
  c = Container::Create(Options(spec), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().ToString().find("CAP_BOGUS"), std::string::npos);

  CreateOptions o = Options(BaseSpec({"sh"}));
  o.rootfs = dir_ + "/missing";
  c = Container::Create(o, &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kNotFound);
  ReapStragglers();
  EXPECT_EQ(waitpid(-1, nullptr, __WALL | WNOHANG), -1);
}

TEST_F(ContainerTest, ExecNotFoundFailsCreateAndLeavesNothing) {
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(BaseSpec({"nosuchcmd"})), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ExecFailureOf(c.error()), ExecFailure::kNotFound) << c.error().ToString();
  EXPECT_NE(c.error().ToString().find("executable \"nosuchcmd\" in $PATH"), std::string::npos)
      << c.error().ToString();
  EXPECT_EQ(init.pid(), -1);
  // An absolute path that is a directory is refused as execve would.
  c = Container::Create(Options(BaseSpec({"/bin"})), &io, &init);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(ExecFailureOf(c.error()), ExecFailure::kPermissionDenied) << c.error().ToString();
  EXPECT_TRUE(AllChildrenGone());
  if (!cgroup_root_.empty()) {
    EXPECT_FALSE(PathExists(cgroup_root_ + "/c1"));
  }
}

TEST_F(ContainerTest, ExecOfAMissingProgramFailsBeforeStart) {
  SKIP_UNDER_TSAN();  // the exec joins the container with setns
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(BaseSpec({"sleep", "30"})), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  oci::Process p = *BaseSpec({"nosuchcmd"}).process;
  ProcessIo eio;
  auto e = (*c)->Exec(p, false, &eio);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(ExecFailureOf(e.error()), ExecFailure::kNotFound) << e.error().ToString();
  ASSERT_TRUE((*c)->Destroy().ok());
  ReapStragglers();
}

TEST_F(ContainerTest, UnstartedInitIsKilledWithItsOwner) {
  ProcessIo io;
  pid_t pid = -1;
  {
    PendingProcess init;
    auto c = Container::Create(Options(BaseSpec({"sh", "-c", "echo never"})), &io, &init);
    ASSERT_TRUE(c.ok()) << c.error().ToString();
    pid = init.pid();
  }
  int st = WaitFor(pid);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
  EXPECT_EQ(ReadAll(io.stdout_r.get()), "");
}

TEST_F(ContainerTest, ExecJoinsTheContainer) {
  SKIP_UNDER_TSAN();
  ProcessIo io;
  PendingProcess init;
  oci::Spec spec = BaseSpec({"sleep", "30"});
  spec.process->capabilities = oci::Capabilities{{"CAP_KILL"}, {"CAP_KILL"}, {}, {"CAP_KILL"}, {}};
  ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/grep").c_str()), 0);
  auto c = Container::Create(Options(spec), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE(init.Start().ok());

  oci::Process p;
  p.args = {"sh", "-c",
            "hostname; cat /proc/1/cmdline; echo; echo $$; pwd; cat; "
            "grep -E '^CapBnd:' /proc/self/status"};
  p.env = {"PATH=/bin"};
  p.cwd = "/tmp";
  ProcessIo eio;
  auto exec = (*c)->Exec(p, /*open_stdin=*/true, &eio);
  ASSERT_TRUE(exec.ok()) << exec.error().ToString();
  ASSERT_TRUE(eio.stdin_w.valid());
  auto pid = exec->Start();
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  ASSERT_TRUE(WriteAll(eio.stdin_w.get(), "from-stdin\n").ok());
  eio.stdin_w.Reset();
  std::string out = ReadAll(eio.stdout_r.get());
  EXPECT_EQ(out.substr(0, out.find('\n') + 1), "cask-test\n");
  EXPECT_NE(out.find(std::string("sleep\0", 6) + "30"), std::string::npos) << out;
  EXPECT_NE(out.find("\n/tmp\nfrom-stdin\n"), std::string::npos) << out;
  // No capabilities in the exec request: the container's apply.
  EXPECT_NE(out.find("CapBnd:\t0000000000000020"), std::string::npos) << out;
  int st = WaitFor(*pid);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);

  if (!cgroup_root_.empty()) {
    auto pids = (*c)->Pids();
    ASSERT_TRUE(pids.ok()) << pids.error().ToString();
    EXPECT_EQ(*pids, std::vector<pid_t>{(*c)->init_pid()});
    EXPECT_TRUE((*c)->Pause().ok());
    EXPECT_TRUE((*c)->Resume().ok());
    auto stats = (*c)->Stats();
    ASSERT_TRUE(stats.ok()) << stats.error().ToString();
    EXPECT_GT(stats->cpu_stat["usage_usec"], 0u);
  }
  ASSERT_TRUE((*c)->KillAll(SIGKILL).ok());
  st = WaitFor((*c)->init_pid());
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
  EXPECT_TRUE((*c)->Destroy().ok());
  EXPECT_TRUE((*c)->Destroy().ok());
  if (!cgroup_root_.empty()) {
    EXPECT_FALSE(PathExists(cgroup_root_ + "/c1"));
  }
  ProcessIo late;
  EXPECT_FALSE((*c)->Exec(p, false, &late).ok());
}

// A pending process holds only its stdio, the start channel and the exec
// error pipe: any other fd of the agent (e.g. another container's pipes,
// open in another thread at fork time) is closed right after fork.
TEST_F(ContainerTest, PendingProcessHoldsNoStrayFds) {
  UniqueFd stray(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(stray.valid());
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(BaseSpec({"sh", "-c", "true"})), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  std::string fd_dir = "/proc/" + std::to_string(init.pid()) + "/fd";
  std::vector<int> fds;
  DIR* d = opendir(fd_dir.c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') fds.push_back(atoi(e->d_name));
  }
  closedir(d);
  std::sort(fds.begin(), fds.end());
  ASSERT_EQ(fds.size(), 5u) << "fds 0-2, start channel, exec-error pipe";
  EXPECT_EQ(fds[0], 0);
  EXPECT_EQ(fds[2], 2);
  EXPECT_EQ(std::count(fds.begin(), fds.end(), stray.get()), 0) << stray.get();
}

// Containers created at the same time from several threads (as the agent
// does) must not inherit each other's fds: a stdout write end leaked into a
// concurrently created, still pending container would keep the reader from
// seeing EOF for as long as that container stays pending.
TEST_F(ContainerTest, ConcurrentCreatesDoNotShareFds) {
  constexpr int kPairs = 4;
  std::vector<std::thread> threads;
  std::vector<std::string> outs(kPairs);
  std::vector<double> seconds(kPairs, 0);
  std::vector<char> ended(kPairs, 0);
  std::atomic<int> readers_done{0};
  for (int i = 0; i < 2 * kPairs; ++i) {
    threads.emplace_back([&, i] {
      ProcessIo io;
      PendingProcess init;
      bool echo = i % 2 == 0;
      oci::Spec spec = BaseSpec(echo ? std::vector<std::string>{"sh", "-c", "echo hi"}
                                     : std::vector<std::string>{"sleep", "30"});
      auto c = Container::Create(Options(spec, "t" + std::to_string(i)), &io, &init);
      ASSERT_TRUE(c.ok()) << c.error().ToString();
      if (!echo) {
        while (readers_done.load() < kPairs) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return;  // ~PendingProcess kills it; ~Container removes its cgroup
      }
      auto t0 = std::chrono::steady_clock::now();
      Status started = init.Start().ok() ? Ok() : Error::Internal("start failed");
      // A leaked write end keeps EOF away until the pending containers are
      // killed, which waits for these readers: the read then ends by its
      // timeout (long, so a slow machine is no false failure).
      bool eof = false;
      outs[i / 2] = ReadAll(io.stdout_r.get(), std::chrono::seconds(60), &eof);
      ended[i / 2] = eof;
      seconds[i / 2] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      readers_done++;
      EXPECT_TRUE(started.ok());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kPairs; ++i) {
    EXPECT_EQ(outs[i], "hi\n");
    EXPECT_TRUE(ended[i]) << "output of container " << 2 * i << " did not end (" << seconds[i] << " s)";
  }
}

TEST_F(ContainerTest, TerminalIsControllingTty) {
  // tty(1) names the pty of the container's own devpts (as runc: pts/0),
  // /dev/console is that pty, it is the controlling terminal (/dev/tty
  // opens) and has the requested size; nothing precedes the output.
  oci::Spec spec = BaseSpec(
      {"sh", "-c",
       "test -t 0 && test -t 1 && echo is-a-tty; tty; stty size; "
       "echo ctty > /dev/tty && stty size < /dev/console && ls -1 /dev/pts"});
  spec.process->terminal = true;
  spec.process->console_size = oci::ConsoleSize{33, 77};
  ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/stty").c_str()), 0);
  ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/tty").c_str()), 0);
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(spec), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE(io.pty_master.valid());
  EXPECT_FALSE(io.stdout_r.valid());
  ASSERT_TRUE(init.Start().ok());
  std::string out = ReadAll(io.pty_master.get());
  EXPECT_EQ(out.rfind("is-a-tty\r\n/dev/pts/0\r\n33 77\r\nctty\r\n33 77\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("\r\n0\r\nptmx\r\n"), std::string::npos) << out;  // ls /dev/pts
  WaitFor((*c)->init_pid());
}

TEST_F(ContainerTest, ExecTerminalIsInTheContainersDevpts) {
  SKIP_UNDER_TSAN();
  ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/stty").c_str()), 0);
  ASSERT_EQ(symlink("busybox", (rootfs_ + "/bin/tty").c_str()), 0);
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(Options(BaseSpec({"sleep", "30"})), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE(init.Start().ok());
  oci::Process p;
  p.args = {"sh", "-c", "tty; stty size; echo ctty > /dev/tty"};
  p.env = {"PATH=/bin"};
  p.cwd = "/";
  p.terminal = true;
  p.console_size = oci::ConsoleSize{21, 61};
  ProcessIo eio;
  auto exec = (*c)->Exec(p, false, &eio);
  ASSERT_TRUE(exec.ok()) << exec.error().ToString();
  ASSERT_TRUE(eio.pty_master.valid());
  auto pid = exec->Start();
  ASSERT_TRUE(pid.ok()) << pid.error().ToString();
  std::string out = ReadAll(eio.pty_master.get());
  EXPECT_EQ(out, "/dev/pts/0\r\n21 61\r\nctty\r\n");
  WaitFor(*pid);
  ASSERT_TRUE((*c)->KillAll(SIGKILL).ok());
  WaitFor((*c)->init_pid());
}

// A read-only bind is read-only in its sub-mounts too (mount_setattr
// AT_RECURSIVE), and so is a read-only path.
TEST_F(ContainerTest, ReadOnlyBindIsReadOnlyInSubMounts) {
  const std::string src = dir_ + "/src";
  ASSERT_TRUE(MkdirAll(src + "/sub").ok());
  ASSERT_EQ(mount("tmpfs", (src + "/sub").c_str(), "tmpfs", 0, "size=64k"), 0);
  oci::Spec spec = BaseSpec({"sh", "-c",
                             "touch /ro/top 2>/dev/null && echo top-written; "
                             "touch /ro/sub/x 2>/dev/null && echo sub-written; "
                             "touch /data/sub/y 2>/dev/null && echo path-sub-written; "
                             "touch /rw/sub/z && echo rrw-sub-written; echo done"});
  spec.mounts.push_back({"/ro", "bind", src, {"rbind", "ro"}});
  spec.mounts.push_back({"/rw", "bind", src, {"rbind", "ro", "rrw"}});
  spec.mounts.push_back({"/data", "tmpfs", "tmpfs", {"size=64k"}});
  spec.mounts.push_back({"/data/sub", "tmpfs", "tmpfs", {"size=64k"}});
  spec.linux->readonly_paths.push_back("/data");
  auto r = CreateAndRun(spec);
  umount2((src + "/sub").c_str(), MNT_DETACH);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "rrw-sub-written\ndone\n") << r.err;
}

// A namespace path is never opened: without a resolver it is refused, and
// with one the container joins what the resolver maps it to.
TEST_F(ContainerTest, NamespacePathsAreMappedNotOpened) {
  oci::Spec joiner = BaseSpec({"hostname"});
  joiner.hostname.clear();
  for (auto& ns : joiner.linux->namespaces) {
    if (ns.type == "uts") ns.path = "/proc/1/ns/uts";  // the host's init: must not be used
  }
  {
    ProcessIo io;
    PendingProcess init;
    auto c = Container::Create(Options(joiner, "j0"), &io, &init);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code(), Code::kFailedPrecondition) << c.error().ToString();
  }

  oci::Spec sandbox = BaseSpec({"sleep", "30"});
  sandbox.hostname = "the-sandbox";
  ProcessIo sio;
  PendingProcess sinit;
  auto sbx = Container::Create(Options(sandbox, "sbx"), &sio, &sinit);
  ASSERT_TRUE(sbx.ok()) << sbx.error().ToString();
  ASSERT_TRUE(sinit.Start().ok());

  CreateOptions o = Options(joiner, "j1");
  std::vector<std::string> asked;
  pid_t sandbox_pid = (*sbx)->init_pid();
  o.resolve_namespace = [&](const oci::Namespace& ns) -> Result<NamespaceTarget> {
    asked.push_back(ns.path);
    CASK_ASSIGN_OR_RETURN(UniqueFd fd, Open("/proc/" + std::to_string(sandbox_pid) + "/ns/uts", O_RDONLY));
    return NamespaceTarget{std::move(fd), "uts of sbx"};
  };
  ProcessIo io;
  PendingProcess init;
  auto c = Container::Create(std::move(o), &io, &init);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_TRUE(init.Start().ok());
  EXPECT_EQ(ReadAll(io.stdout_r.get()), "the-sandbox\n");
  EXPECT_EQ(asked, std::vector<std::string>{"/proc/1/ns/uts"});
  WaitFor((*c)->init_pid());
  EXPECT_TRUE((*c)->Destroy().ok());
  EXPECT_TRUE((*sbx)->Destroy().ok());
  WaitFor(sandbox_pid);
}

// The default profile runs a shell and refuses unshare (even of a user
// namespace, which needs no capability) and clone3 falls back to clone.
TEST_F(ContainerTest, DefaultSeccompProfileRefusesUnshare) {
  oci::Spec spec = BaseSpec({"sh", "-c", "echo hi; unshare -U true 2>/dev/null && echo unshared; "
                                         "(echo from-a-subshell); exit 0"});
  spec.process->capabilities = oci::Capabilities{.bounding = {"CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
                                                 .effective = {"CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
                                                 .inheritable = {},
                                                 .permitted = {"CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"},
                                                 .ambient = {}};
  oci::Spec unconfined = spec;
  ASSERT_TRUE(oci::ApplyDefaultSeccomp(spec, true));
  auto r = CreateAndRun(spec);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hi\nfrom-a-subshell\n") << r.err;
  // The same without the profile: the refusal came from seccomp.
  r = CreateAndRun(unconfined);
  EXPECT_EQ(r.out, "hi\nunshared\nfrom-a-subshell\n") << r.err;
}

}  // namespace
}  // namespace cask::container
