#include <fcntl.h>
#include <cerrno>
#include <sys/mount.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "lib/base/fs.h"
#include "lib/base/log.h"
#include "lib/base/process.h"
#include "lib/base/quote.h"
#include "lib/base/result.h"
#include "lib/base/watchdog.h"

namespace cask {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Error::InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  CASK_ASSIGN_OR_RETURN(int h, Half(x));
  CASK_ASSIGN_OR_RETURN(int q, std::move(Half(h)).Context("second half"));
  return q;
}

TEST(Result, ValueAndErrorWithContext) {
  auto ok = Quarter(8);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 2);
  auto bad = Quarter(6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.error().ToString(), "second half: odd: 3");
}

TEST(Error, SysKeepsErrnoAndDefaultsToInternal) {
  auto e = Error::Sys(ENOENT, "open /nope");
  EXPECT_EQ(e.code(), Code::kInternal);  // errno alone never decides the category
  EXPECT_EQ(e.sys_errno(), ENOENT);
  EXPECT_NE(e.ToString().find("open /nope: "), std::string::npos);
  for (int err : {EINVAL, EEXIST, EPERM, ESRCH, ETIMEDOUT}) EXPECT_EQ(Error::Sys(err, "x").code(), Code::kInternal);
  auto named = Error::Sys(Code::kNotFound, ENOENT, "open /nope");
  EXPECT_EQ(named.code(), Code::kNotFound);
  EXPECT_EQ(named.sys_errno(), ENOENT);
}

TEST(Error, ExecFailureMarkerSurvivesContext) {
  Error nf = ExecFailedError(ExecFailure::kNotFound, ENOENT, "exec: /bin/nope");
  EXPECT_EQ(nf.code(), Code::kFailedPrecondition);
  EXPECT_EQ(ExecFailureOf(nf), ExecFailure::kNotFound);
  // As it reaches the host: the agent's context in front, one string.
  Error wire(Code::kFailedPrecondition, "start container c1: " + nf.ToString());
  EXPECT_EQ(ExecFailureOf(wire), ExecFailure::kNotFound);
  Error denied = ExecFailedError(ExecFailure::kPermissionDenied, EACCES, "exec: /etc/passwd");
  EXPECT_EQ(ExecFailureOf(denied), ExecFailure::kPermissionDenied);
  // Only with its code: a NOT_FOUND or INTERNAL error quoting the text is not the reason.
  EXPECT_EQ(ExecFailureOf(Error(Code::kInternal, std::string(kExecNotFoundMarker) + "x")), ExecFailure::kNone);
  EXPECT_EQ(ExecFailureOf(Error::NotFound("exec: /bin/nope: No such file")), ExecFailure::kNone);
}

TEST(Error, BoundedCutsAndSanitises) {
  Error e(Code::kInternal, std::string(5000, 'a') + "\x1b[2J");
  e.Wrap(std::string(3000, 'b'));
  Error b = e.Bounded(100);
  EXPECT_EQ(b.code(), Code::kInternal);
  EXPECT_LT(b.ToString().size(), 300u);
  EXPECT_NE(b.message().find("bytes cut]"), std::string::npos);
  EXPECT_EQ(BoundedString("a\x1b" "b", 10), "a?b");
  EXPECT_EQ(BoundedString("short", 10), "short");
}

TEST(Fs, WriteReadAtomicRemove) {
  char tmpl[] = "/tmp/cask-base-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(MkdirAll(dir + "/a/b/c").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/a/b/c/f", "hello").ok());
  auto r = ReadFile(dir + "/a/b/c/f");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "hello");
  EXPECT_FALSE(PathExists(dir + "/a/b/c/.f.tmp"));
  ASSERT_TRUE(RemoveAll(dir).ok());
  EXPECT_FALSE(PathExists(dir));
  EXPECT_EQ(ReadFile(dir + "/x").error().code(), Code::kNotFound);
}

TEST(Fs, RemoveAllRefusesBindMounts) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for mount(2)";
  char tmpl[] = "/tmp/cask-base-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(MkdirAll(dir + "/src").ok());
  ASSERT_TRUE(WriteFile(dir + "/src/precious", "keep").ok());
  ASSERT_TRUE(MkdirAll(dir + "/tree/mnt").ok());
  ASSERT_EQ(::mount((dir + "/src").c_str(), (dir + "/tree/mnt").c_str(), nullptr, MS_BIND, nullptr), 0);
  auto r = RemoveAll(dir + "/tree");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(PathExists(dir + "/src/precious"));
  ASSERT_EQ(::umount2((dir + "/tree/mnt").c_str(), MNT_DETACH), 0);
  ASSERT_TRUE(RemoveAll(dir).ok());
}

// A temporary directory removed (with the fd helpers' own RemoveAll) at
// the end of the test.
class TempDir {
 public:
  // In /tmp, or in `base` (e.g. /dev/shm, a tmpfs, for big trees).
  explicit TempDir(std::string base = "/tmp") {
    std::string tmpl = base + "/cask-base-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) (void)RemoveAll(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Fs, RemoveAllIsIterativeAtAnyDepth) {
  // 100,000 nested directories (what a hostile guest can make in a share):
  // a recursive removal would overflow the stack or run out of fds.
  TempDir t(PathExists("/dev/shm") ? "/dev/shm" : "/tmp");
  ASSERT_FALSE(t.path().empty());
  constexpr int kDepth = 100000;
  {
    UniqueFd cur(::open(t.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(cur);
    ASSERT_EQ(::mkdirat(cur.get(), "deep", 0755), 0);
    cur.Reset(::openat(cur.get(), "deep", O_PATH | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; i < kDepth; ++i) {
      ASSERT_EQ(::mkdirat(cur.get(), "d", 0755), 0) << i;
      if (i % 1000 == 0) {
        int fd = ::openat(cur.get(), "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0);
        ::close(fd);
        ASSERT_EQ(::symlinkat("/etc", cur.get(), "l"), 0);
      }
      cur.Reset(::openat(cur.get(), "d", O_PATH | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(cur) << i;
    }
  }
  ASSERT_TRUE(RemoveAll(t.path() + "/deep").ok());
  EXPECT_FALSE(PathExists(t.path() + "/deep"));
  EXPECT_TRUE(PathExists("/etc/passwd"));  // symlinks were unlinked, not followed
}

TEST(Fs, RemoveAllUnlinksSymlinksWithoutFollowing) {
  TempDir t;
  ASSERT_TRUE(MkdirAll(t.path() + "/keep").ok());
  ASSERT_TRUE(WriteFile(t.path() + "/keep/precious", "x").ok());
  ASSERT_TRUE(MkdirAll(t.path() + "/tree/a").ok());
  ASSERT_EQ(::symlink((t.path() + "/keep").c_str(), (t.path() + "/tree/a/link").c_str()), 0);
  ASSERT_EQ(::symlink((t.path() + "/keep").c_str(), (t.path() + "/top-link").c_str()), 0);
  ASSERT_TRUE(RemoveAll(t.path() + "/tree").ok());
  ASSERT_TRUE(RemoveAll(t.path() + "/top-link").ok());
  EXPECT_FALSE(PathExists(t.path() + "/tree"));
  EXPECT_FALSE(PathExists(t.path() + "/top-link"));
  EXPECT_TRUE(PathExists(t.path() + "/keep/precious"));
}

TEST(Fs, OpenBeneathRefusesEscapes) {
  TempDir t;
  ASSERT_TRUE(MkdirAll(t.path() + "/root/sub").ok());
  ASSERT_TRUE(MkdirAll(t.path() + "/outside").ok());
  ASSERT_EQ(::symlink((t.path() + "/outside").c_str(), (t.path() + "/root/abs-link").c_str()), 0);
  ASSERT_EQ(::symlink("sub", (t.path() + "/root/rel-link").c_str()), 0);
  auto root = Open(t.path() + "/root", O_PATH | O_DIRECTORY);
  ASSERT_TRUE(root.ok());
  int r = root->get();
  EXPECT_TRUE(OpenBeneath(r, "sub", O_PATH | O_DIRECTORY).ok());
  EXPECT_TRUE(OpenBeneath(r, "", O_PATH | O_DIRECTORY).ok());
  // A symlink, even one that stays inside, is refused in any position.
  EXPECT_FALSE(OpenBeneath(r, "abs-link", O_PATH).ok());
  EXPECT_FALSE(OpenBeneath(r, "rel-link", O_PATH).ok());
  EXPECT_FALSE(OpenBeneath(r, "abs-link/x", O_PATH).ok());
  EXPECT_FALSE(OpenBeneath(r, "../outside", O_PATH).ok());
  EXPECT_FALSE(OpenBeneath(r, "sub/../../outside", O_PATH).ok());
  EXPECT_FALSE(OpenBeneath(r, t.path() + "/outside", O_PATH).ok());
  EXPECT_FALSE(OpenBeneath(r, "/proc/self/root", O_PATH).ok());
  auto missing = OpenBeneath(r, "nope/x", O_PATH);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
}

TEST(Fs, MkdirAllInCreatesBeneathOnly) {
  TempDir t;
  ASSERT_TRUE(MkdirAll(t.path() + "/root").ok());
  ASSERT_TRUE(MkdirAll(t.path() + "/outside").ok());
  auto root = Open(t.path() + "/root", O_PATH | O_DIRECTORY);
  ASSERT_TRUE(root.ok());
  int r = root->get();
  auto made = MkdirAllIn(r, "a/b/c");
  ASSERT_TRUE(made.ok()) << made.error().ToString();
  // The returned fd is the last directory.
  ASSERT_EQ(::mkdirat(made->get(), "d", 0755), 0);
  EXPECT_TRUE(PathExists(t.path() + "/root/a/b/c/d"));
  EXPECT_TRUE(MkdirAllIn(r, "a/b/c").ok());  // existing is fine

  // A symlinked component is refused and nothing is created through it.
  ASSERT_EQ(::symlink((t.path() + "/outside").c_str(), (t.path() + "/root/evil").c_str()), 0);
  EXPECT_FALSE(MkdirAllIn(r, "evil/x").ok());
  EXPECT_FALSE(PathExists(t.path() + "/outside/x"));
  ASSERT_EQ(::symlink("a", (t.path() + "/root/inner").c_str()), 0);
  EXPECT_FALSE(MkdirAllIn(r, "inner/y").ok());
  // "..", absolute and empty components are refused before any syscall.
  EXPECT_EQ(MkdirAllIn(r, "../outside/z").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(MkdirAllIn(r, "/abs").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(MkdirAllIn(r, "a//b").error().code(), Code::kInvalidArgument);
  EXPECT_FALSE(PathExists(t.path() + "/outside/z"));
  // A file in the way.
  ASSERT_TRUE(WriteFile(t.path() + "/root/file", "").ok());
  EXPECT_FALSE(MkdirAllIn(r, "file/x").ok());
}

TEST(Fs, RemoveAllInNeverLeavesTheRoot) {
  TempDir t;
  ASSERT_TRUE(MkdirAll(t.path() + "/root/a/b").ok());
  ASSERT_TRUE(MkdirAll(t.path() + "/outside/b").ok());
  ASSERT_TRUE(WriteFile(t.path() + "/outside/b/precious", "x").ok());
  ASSERT_EQ(::symlink((t.path() + "/outside").c_str(), (t.path() + "/root/link").c_str()), 0);
  auto root = Open(t.path() + "/root", O_PATH | O_DIRECTORY);
  ASSERT_TRUE(root.ok());
  // Through a symlinked parent: refused, the target untouched.
  EXPECT_FALSE(RemoveAllIn(root->get(), "link/b").ok());
  EXPECT_TRUE(PathExists(t.path() + "/outside/b/precious"));
  // The symlink itself is removed as a symlink.
  EXPECT_TRUE(RemoveAllIn(root->get(), "link").ok());
  EXPECT_TRUE(PathExists(t.path() + "/outside/b/precious"));
  EXPECT_FALSE(PathExists(t.path() + "/root/link"));
  EXPECT_TRUE(RemoveAllIn(root->get(), "a").ok());
  EXPECT_FALSE(PathExists(t.path() + "/root/a"));
  EXPECT_TRUE(RemoveAllIn(root->get(), "a/missing").ok());
  EXPECT_EQ(RemoveAllIn(root->get(), "../outside").error().code(), Code::kInvalidArgument);
}

TEST(Fs, MountRootAndIdOfFds) {
  auto root = Open("/", O_PATH | O_DIRECTORY);
  ASSERT_TRUE(root.ok());
  auto is_root = IsMountRootFd(root->get());
  ASSERT_TRUE(is_root.ok()) << is_root.error().ToString();
  EXPECT_TRUE(*is_root);
  auto id = MountIdOf(root->get());
  ASSERT_TRUE(id.ok());
  EXPECT_GT(*id, 0u);
  TempDir t;
  auto sub = Open(t.path(), O_PATH | O_DIRECTORY);
  ASSERT_TRUE(sub.ok());
  auto sub_root = IsMountRootFd(sub->get());
  ASSERT_TRUE(sub_root.ok());
  EXPECT_FALSE(*sub_root);
}

TEST(Fs, PathHelpers) {
  EXPECT_EQ(Dirname("/a/b"), "/a");
  EXPECT_EQ(Dirname("/a"), "/");
  EXPECT_EQ(Basename("/a/b"), "b");
  EXPECT_EQ(JoinPath("/a/", "/b"), "/a/b");
}

TEST(Process, SpawnWaitExitStatus) {
  auto c = Spawn({"/bin/sh", "-c", "exit 7"}, {});
  ASSERT_TRUE(c.ok());
  auto st = c->Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 7);
}

TEST(Process, SpawnMissingBinaryIsAnError) {
  auto c = Spawn({"/nonexistent/binary"}, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kNotFound);
}

TEST(Process, DestructorKillsAndReaps) {
  pid_t pid;
  {
    auto c = Spawn({"/bin/sleep", "100"}, {});
    ASSERT_TRUE(c.ok());
    pid = c->pid();
  }
  EXPECT_EQ(::kill(pid, 0), -1);
}

TEST(Process, TerminateGivesSignalStatus) {
  auto c = Spawn({"/bin/sleep", "100"}, {});
  ASSERT_TRUE(c.ok());
  auto st = c->Terminate(std::chrono::milliseconds(2000));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, 128 + SIGTERM);
}

TEST(Log, LogfmtLine) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Logger log(p[1], LogLevel::kInfo, "test");
  log.With("sandbox", "s1").Info("hello world", {{"k", "v"}});
  log.Debug("hidden");
  close(p[1]);
  char buf[512] = {};
  ssize_t n = read(p[0], buf, sizeof buf - 1);
  close(p[0]);
  ASSERT_GT(n, 0);
  std::string line(buf, static_cast<size_t>(n));
  EXPECT_NE(line.find("level=info msg=\"hello world\" subsystem=test sandbox=s1 k=v\n"), std::string::npos) << line;
  EXPECT_EQ(line.find("hidden"), std::string::npos);
}

TEST(Quote, DoubleQuotedEscapes) {
  EXPECT_EQ(DoubleQuoted(""), "\"\"");
  EXPECT_EQ(DoubleQuoted("plain"), "\"plain\"");
  EXPECT_EQ(DoubleQuoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(DoubleQuoted("1\n2\t3\r"), "\"1\\n2\\t3\\r\"");
  EXPECT_EQ(DoubleQuoted(std::string_view("\x01\x1f\x7f\0", 4)), "\"\\u0001\\u001f\\u007f\\u0000\"");
  EXPECT_EQ(DoubleQuoted("caf\xc3\xa9"), "\"caf\xc3\xa9\"");  // UTF-8 kept
}

TEST(Log, LogfmtValueQuotesOnlyWhenNeeded) {
  EXPECT_EQ(LogfmtValue("v1.2_x/y"), "v1.2_x/y");
  EXPECT_EQ(LogfmtValue(""), "\"\"");
  EXPECT_EQ(LogfmtValue("a b"), "\"a b\"");
  EXPECT_EQ(LogfmtValue("k=v"), "\"k=v\"");
  EXPECT_EQ(LogfmtValue("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
  EXPECT_EQ(LogfmtValue("bell\a"), "\"bell\\u0007\"");
}

// The watchdog acts when its parent's write end goes (EOF: -1) or on a
// byte, and reports a failed action in its exit status.
int WatchdogExit(ForkedWatchdog& wd) {
  int status = 0;
  while (::waitpid(wd.pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(WatchdogTest, ActsOnEofOrByteAndReportsFailure) {
  char tmpl[] = "/tmp/cask-wd-test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  WatchdogOptions o;
  o.name = "test watchdog";
  o.close_other_fds = true;
  auto record = [&](const std::string& file) {
    return [file](int byte) -> Status { return WriteFile(file, std::to_string(byte)); };
  };
  auto eof = ForkWatchdog(o, record(dir + "/eof"));
  ASSERT_TRUE(eof.ok()) << eof.error().ToString();
  eof->pipe.Reset();  // as if the parent died
  EXPECT_EQ(WatchdogExit(*eof), 0);
  EXPECT_EQ(*ReadFile(dir + "/eof"), "-1");

  auto byte = ForkWatchdog(o, record(dir + "/byte"));
  ASSERT_TRUE(byte.ok());
  ASSERT_EQ(::write(byte->pipe.get(), "d", 1), 1);
  EXPECT_EQ(WatchdogExit(*byte), 0);
  EXPECT_EQ(*ReadFile(dir + "/byte"), std::to_string('d'));

  auto failing = ForkWatchdog(o, [](int) -> Status { return Error::Internal("boom"); });
  ASSERT_TRUE(failing.ok());
  failing->pipe.Reset();
  EXPECT_EQ(WatchdogExit(*failing), 1);
  ASSERT_TRUE(RemoveAll(dir).ok());
}

}  // namespace
}  // namespace cask
