#include "lib/container/process.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>

#include "lib/base/fs.h"
#include "lib/container/terminal.h"
#include "lib/oci/names.h"

namespace cask::container {
namespace {

constexpr auto kSetupTimeout = std::chrono::seconds(60);
constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// --- the sync socket protocol (agent <-> intermediate/final) -------------

// kPty carries the pty master (SCM_RIGHTS) of a terminal process.
enum MsgType : uint32_t { kPid = 1, kReady = 2, kError = 3, kUserNs = 4, kPty = 5 };

struct Msg {
  uint32_t type = 0;
  int32_t value = 0;  // pid, or the error's Code
  char text[2048];    // error message (not NUL-terminated)
};

void Send(int sock, uint32_t type, int32_t value, std::string_view text = {}) {
  Msg m;
  m.type = type;
  m.value = value;
  size_t n = std::min(text.size(), sizeof m.text);
  if (n > 0) memcpy(m.text, text.data(), n);
  while (send(sock, &m, offsetof(Msg, text) + n, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

// Sends a message with `fd` attached (SCM_RIGHTS).
Status SendWithFd(int sock, uint32_t type, int fd) {
  Msg m;
  m.type = type;
  m.value = 0;
  iovec iov{&m, offsetof(Msg, text)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do {
    n = sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::Sys(errno, "send the pty master to the agent");
  return Ok();
}

// Reports `e` to the agent and exits. With `start_fd`, first waits for the
// agent to close the start channel, so the pid stays valid until the agent
// has read the error and decided to kill it.
[[noreturn]] void Fail(int sync, int start_fd, const Error& e) {
  Send(sync, kError, static_cast<int32_t>(e.code()), e.ToString());
  close(sync);
  if (start_fd >= 0) {
    char c;
    while (read(start_fd, &c, 1) < 0 && errno == EINTR) {
    }
  }
  _exit(1);
}

// Exec failures go through the close-on-exec pipe: errno, then text.
[[noreturn]] void FailExec(int err_w, int err, const std::string& what) {
  std::string buf(sizeof(int32_t), '\0');
  int32_t e = err;
  memcpy(buf.data(), &e, sizeof e);
  buf += what;
  (void)!write(err_w, buf.data(), buf.size());
  _exit(127);
}

void ResetSignals() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  for (int s = 1; s < NSIG; ++s) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &sa, nullptr);  // fails harmlessly for glibc-reserved signals
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Moves an fd that sits on 0-2 above them (stdio is replaced later).
void LiftFd(int* fd) {
  if (*fd >= 0 && *fd < 3) *fd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
}

// Closes every fd >= 3 not in `keep`.
void CloseAllExcept(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int lo = 3;
  for (int k : keep) {
    if (k < 3) continue;
    unsigned int u = static_cast<unsigned int>(k);
    if (u > lo) close_range(lo, u - 1, 0);
    lo = std::max(lo, u + 1);
  }
  close_range(lo, ~0u, 0);
}

struct ChildFds {
  int sync, start_r, err_w;
  int in, out, err;
  int cgroup;
};

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

Status ApplyProcessSettings(const ProcessPlan& p) {
  for (const auto& [res, lim] : p.rlimits) {
    if (setrlimit(static_cast<__rlimit_resource_t>(res), &lim) != 0) {
      return Error::Sys(errno,
                        "setrlimit " + std::string(oci::RlimitNames()[static_cast<size_t>(res)]));
    }
  }
  // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
  // before the capabilities go (as runc). Otherwise as late as possible.
  if (!p.no_new_privileges) CASK_TRY(LoadSeccomp(p.seccomp));
  if (p.caps) {
    CASK_TRY(DropBoundingSet(*p.caps, p.last_cap));
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return Error::Sys(errno, "PR_SET_KEEPCAPS");
  }
  const auto& gids = p.user.additional_gids;
  if (setgroups(gids.size(), reinterpret_cast<const gid_t*>(gids.data())) != 0) {
    // In a user namespace with setgroups denied, an empty list is fine.
    if (!(errno == EPERM && gids.empty())) return Error::Sys(errno, "setgroups");
  }
  if (setresgid(p.user.gid, p.user.gid, p.user.gid) != 0) {
    return Error::Sys(errno, "setgid " + std::to_string(p.user.gid));
  }
  if (setresuid(p.user.uid, p.user.uid, p.user.uid) != 0) {
    return Error::Sys(errno, "setuid " + std::to_string(p.user.uid));
  }
  if (p.caps) {
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return Error::Sys(errno, "PR_SET_KEEPCAPS");
    CASK_TRY(ApplyCapabilities(*p.caps, p.last_cap));
  }
  umask(p.user.umask.value_or(022));
  if (p.no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return Error::Sys(errno, "set no_new_privs");
  }
  if (chdir(p.cwd.c_str()) != 0) return Error::Sys(errno, "chdir to cwd " + p.cwd);
  return Ok();
}

// Bind-mounts the pty slave `slave_path` over /dev/console (in the
// container's root), creating an empty file to mount on if needed.
Status BindConsole(const std::string& slave_path) {
  struct stat st {};
  bool exists = lstat("/dev/console", &st) == 0;
  if (!exists && errno != ENOENT) return Error::Sys(errno, "stat /dev/console");
  if (exists && S_ISLNK(st.st_mode)) {
    if (unlink("/dev/console") != 0) return Error::Sys(errno, "remove the /dev/console symlink");
    exists = false;
  }
  if (!exists) {
    int fd = open("/dev/console", O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return Error::Sys(errno, "create /dev/console to mount the terminal on");
    close(fd);
  }
  if (mount(slave_path.c_str(), "/dev/console", nullptr, MS_BIND, nullptr) != 0) {
    return Error::Sys(errno, "bind " + slave_path + " over /dev/console");
  }
  return Ok();
}

// In the container (its mount namespace and root): opens a pty from the
// container's /dev/ptmx, makes the slave the controlling terminal and
// stdio, hands the master to the agent.
Status SetupTerminal(const SpawnRequest& req, int sync) {
  auto pty = OpenPty(req.stdio.console_size);
  if (!pty.ok()) {
    return std::move(pty).error().Wrap("open a terminal in the container (is devpts mounted on /dev/pts?)");
  }
  if (req.bind_console) CASK_TRY(BindConsole(pty->slave_path));
  // As runc: the terminal belongs to the process's user, so it can reopen
  // it (a user namespace without that id refuses: EINVAL/EPERM, ignored).
  const oci::User& u = req.process->user;
  if (fchown(pty->slave.get(), u.uid, u.gid) != 0 && errno != EINVAL && errno != EPERM) {
    return Error::Sys(errno, "chown " + pty->slave_path);
  }
  CASK_TRY(SetControllingTerminal(pty->slave.get()));
  return SendWithFd(sync, kPty, pty->master.get());
}

}  // namespace

Status CheckExecutable(const std::string& file, const std::vector<std::string>& candidates) {
  bool denied = false;
  for (const auto& path : candidates) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      if (errno == EACCES) denied = true;  // a directory on the way is not searchable
      continue;
    }
    // execve refuses a directory or a non-executable file with EACCES.
    if (!S_ISDIR(st.st_mode) && access(path.c_str(), X_OK) == 0) return Ok();
    denied = true;
  }
  std::string what = "executable \"" + file + "\"";
  if (file.find('/') == std::string::npos) what += " in $PATH of the process";
  if (denied) return ExecFailedError(ExecFailure::kPermissionDenied, EACCES, what);
  return ExecFailedError(ExecFailure::kNotFound, ENOENT, what);
}

namespace {

Status PrepareFinal(const SpawnRequest& req, const ChildFds& fds) {
  if (!req.stdio.terminal) {
    if (setsid() < 0) return Error::Sys(errno, "setsid");
    int src[3] = {fds.in, fds.out, fds.err};
    for (int i = 0; i < 3; ++i) {
      if (dup2(src[i], i) < 0) return Error::Sys(errno, "dup2 stdio fd " + std::to_string(i));
    }
    for (int fd : src) close(fd);
  }
  if (req.setup) CASK_TRY(req.setup());
  if (req.stdio.terminal) CASK_TRY(SetupTerminal(req, fds.sync));
  return ApplyProcessSettings(*req.process);
}

[[noreturn]] void RunFinal(const SpawnRequest& req, const ChildFds& fds) {
  Status st = PrepareFinal(req, fds);
  if (st.ok()) st = CheckExecutable(req.process->args[0], req.process->exec_paths);
  if (!st.ok()) Fail(fds.sync, fds.start_r, st.error());
  const ProcessPlan& p = *req.process;
  std::vector<char*> argv = CStrings(p.args);
  std::vector<char*> envp = CStrings(p.env);

  Send(fds.sync, kReady, 0);
  close(fds.sync);
  char c = 0;
  ssize_t n;
  do {
    n = read(fds.start_r, &c, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) _exit(1);  // the agent gave up on this process
  close(fds.start_r);

  if (p.no_new_privileges) {
    Status sec = LoadSeccomp(p.seccomp);
    if (!sec.ok()) FailExec(fds.err_w, sec.error().sys_errno(), "load seccomp filter");
  }
  int err = ENOENT;
  bool eacces = false;
  for (const auto& path : p.exec_paths) {
    execve(path.c_str(), argv.data(), envp.data());
    err = errno;
    if (err == EACCES) {
      eacces = true;
    } else if (err != ENOENT && err != ENOTDIR && err != ENAMETOOLONG && err != ELOOP) {
      break;
    }
  }
  if (err != EACCES && eacces && p.exec_paths.size() > 1) err = EACCES;
  FailExec(fds.err_w, err, "exec: " + p.args[0]);
}

[[noreturn]] void RunIntermediate(SpawnRequest& req, ChildFds fds) {
  ResetSignals();
  std::vector<int*> mine = {&fds.sync, &fds.start_r, &fds.err_w, &fds.in,
                            &fds.out,  &fds.err,     &fds.cgroup};
  for (int* fd : mine) LiftFd(fd);
  std::vector<int> keep;
  for (int* fd : mine) keep.push_back(*fd);
  for (auto& j : req.joins) {
    int fd = j.fd.Release();
    LiftFd(&fd);
    j.fd.Reset(fd);
    keep.push_back(fd);
  }
  CloseAllExcept(keep);

  if (fds.cgroup >= 0 && write(fds.cgroup, "0", 1) < 0) {
    Fail(fds.sync, -1, Error::Sys(errno, "join the container cgroup"));
  }
  // Existing namespaces first (joining them needs our privileges in the
  // initial user namespace), then a new user namespace, then the others.
  if (Status st = JoinNamespaces(req.joins); !st.ok()) Fail(fds.sync, -1, st.error());
  for (auto& j : req.joins) j.fd.Reset();
  if (req.new_user) {
    if (unshare(CLONE_NEWUSER) != 0) {
      Fail(fds.sync, -1, Error::Sys(errno, "create user namespace"));
    }
    Send(fds.sync, kUserNs, 0);
    char c;
    if (recv(fds.sync, &c, 1, 0) != 1) _exit(1);
    if (setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0) {
      Fail(fds.sync, -1, Error::Sys(errno, "become root in the new user namespace"));
    }
  }
  if (req.unshare_flags != 0 && unshare(req.unshare_flags) != 0) {
    Fail(fds.sync, -1, Error::Sys(errno, "create namespaces"));
  }
  if (fds.cgroup >= 0) close(fds.cgroup);
  pid_t pid = fork();
  if (pid < 0) Fail(fds.sync, -1, Error::Sys(errno, "fork"));
  if (pid == 0) RunFinal(req, fds);
  Send(fds.sync, kPid, pid);
  _exit(0);
}

Status WriteIdMaps(pid_t pid, const SpawnRequest& req) {
  std::string base = "/proc/" + std::to_string(pid) + "/";
  CASK_TRY(WriteFile(base + "uid_map", req.uid_map).Context("write uid_map"));
  CASK_TRY(WriteFile(base + "gid_map", req.gid_map).Context("write gid_map"));
  return Ok();
}

}  // namespace

// --- PendingProcess ------------------------------------------------------

PendingProcess::PendingProcess(pid_t pid, UniqueFd start_w, UniqueFd exec_err_r)
    : pid_(pid), start_w_(std::move(start_w)), exec_err_r_(std::move(exec_err_r)) {}

PendingProcess::~PendingProcess() {
  // Still blocked on the start channel, so the pid is still ours to kill.
  if (pid_ > 0 && start_w_.valid()) kill(pid_, SIGKILL);
}

Result<pid_t> PendingProcess::Start() {
  if (pid_ <= 0 || !start_w_.valid()) {
    return Error::FailedPrecondition("process " + std::to_string(pid_) + " was already started");
  }
  char go = 's';
  ssize_t n;
  do {
    n = send(start_w_.get(), &go, 1, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  int send_err = errno;
  start_w_.Reset();
  if (n != 1) {
    return Error::Sys(send_err, "start process " + std::to_string(pid_) + " (it has exited)");
  }
  std::string buf;
  char chunk[512];
  for (;;) {
    ssize_t r = read(exec_err_r_.get(), chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    buf.append(chunk, static_cast<size_t>(r));
    if (buf.size() > 4096) break;  // our own child's message; bound it anyway
  }
  exec_err_r_.Reset();
  if (buf.empty()) return pid_;
  int32_t err = 0;
  if (buf.size() >= sizeof err) memcpy(&err, buf.data(), sizeof err);
  std::string what = buf.size() > sizeof err ? buf.substr(sizeof err) : "exec";
  if (err == 0) err = EIO;
  // The reason the host reads (lib/base/error.h): the program is missing or
  // not executable. Any other failure before or at execve is INTERNAL.
  if (what.rfind("exec: ", 0) == 0) {
    if (err == ENOENT || err == ENOTDIR || err == ELOOP || err == ENAMETOOLONG)
      return ExecFailedError(ExecFailure::kNotFound, err, what);
    if (err == EACCES) return ExecFailedError(ExecFailure::kPermissionDenied, err, what);
  }
  return Error::Sys(err, what);
}

// --- planning ------------------------------------------------------------

std::vector<std::string> ExecCandidates(const std::string& file,
                                        const std::vector<std::string>& env) {
  if (file.find('/') != std::string::npos) return {file};
  std::string path = kDefaultPath;
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (dir.empty()) dir = ".";
    out.push_back(dir + "/" + file);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return out;
}

Result<ProcessPlan> PlanProcess(const oci::Process& proc,
                                const std::optional<oci::Seccomp>& seccomp) {
  ProcessPlan p;
  if (proc.args.empty() || proc.args[0].empty()) {
    return Error::InvalidArgument("process args are empty");
  }
  if (proc.cwd.empty() || proc.cwd[0] != '/') {
    return Error::InvalidArgument("process cwd \"" + proc.cwd + "\" is not absolute");
  }
  for (const auto& e : proc.env) {
    if (e.find('=') == std::string::npos || e[0] == '=') {
      return Error::InvalidArgument("environment entry \"" + e + "\" is not KEY=value");
    }
  }
  p.args = proc.args;
  p.env = proc.env;
  p.cwd = proc.cwd;
  p.user = proc.user;
  p.exec_paths = ExecCandidates(proc.args[0], proc.env);
  p.last_cap = LastCapability();
  if (proc.capabilities) {
    CASK_ASSIGN_OR_RETURN(CapabilitySets sets, ResolveCapabilities(*proc.capabilities, p.last_cap));
    p.caps = sets;
  }
  for (const auto& r : proc.rlimits) {
    std::optional<int> resource = oci::RlimitNumber(r.type);
    if (!resource) return Error::InvalidArgument("unknown rlimit \"" + r.type + "\"");
    if (r.soft > r.hard) {
      return Error::InvalidArgument("rlimit " + r.type + ": soft limit above hard limit");
    }
    rlimit lim{};
    lim.rlim_cur = r.soft;
    lim.rlim_max = r.hard;
    p.rlimits.emplace_back(*resource, lim);
  }
  if (proc.oom_score_adj &&
      (*proc.oom_score_adj < -1000 || *proc.oom_score_adj > 1000)) {
    return Error::InvalidArgument("oom_score_adj " + std::to_string(*proc.oom_score_adj) +
                                  " is outside -1000..1000");
  }
  p.oom_score_adj = proc.oom_score_adj;
  p.no_new_privileges = proc.no_new_privileges;
  if (seccomp) {
    CASK_ASSIGN_OR_RETURN(p.seccomp, CompileSeccomp(*seccomp));
  }
  return p;
}

Result<ChildStdio> MakeStdio(bool terminal, const std::optional<oci::ConsoleSize>& size,
                             bool open_stdin, ProcessIo* io) {
  ChildStdio c;
  if (terminal) {
    if (size && (size->height > USHRT_MAX || size->width > USHRT_MAX)) {
      return Error::InvalidArgument("console size " + std::to_string(size->width) + "x" +
                                    std::to_string(size->height) + " is out of range");
    }
    c.terminal = true;
    c.console_size = size;
    return c;
  }
  auto make_pipe = [](UniqueFd* r, UniqueFd* w) -> Status {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe");
    r->Reset(p[0]);
    w->Reset(p[1]);
    return Ok();
  };
  if (open_stdin) {
    CASK_TRY(make_pipe(&c.in, &io->stdin_w));
  } else {
    CASK_ASSIGN_OR_RETURN(c.in, Open("/dev/null", O_RDONLY));
  }
  CASK_TRY(make_pipe(&io->stdout_r, &c.out));
  CASK_TRY(make_pipe(&io->stderr_r, &c.err));
  return c;
}

// --- spawning ------------------------------------------------------------

Result<PendingProcess> SpawnPending(SpawnRequest req) {
  if (req.stdio.terminal && req.pty_master_out == nullptr) {
    return Error::InvalidArgument(req.what + ": a terminal needs SpawnRequest::pty_master_out");
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return Error::Sys(errno, "socketpair");
  }
  UniqueFd sync(sv[0]), child_sync(sv[1]);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return Error::Sys(errno, "socketpair");
  }
  UniqueFd start_w(sv[0]), start_r(sv[1]);
  int pp[2];
  if (pipe2(pp, O_CLOEXEC) != 0) return Error::Sys(errno, "pipe");
  UniqueFd err_r(pp[0]), err_w(pp[1]);

  pid_t inter = fork();
  if (inter < 0) return Error::Sys(errno, "fork");
  if (inter == 0) {
    ChildFds fds{child_sync.get(), start_r.get(), err_w.get(), req.stdio.in.get(),
                 req.stdio.out.get(), req.stdio.err.get(), req.cgroup_procs_fd};
    RunIntermediate(req, fds);
  }
  child_sync.Reset();
  start_r.Reset();
  err_w.Reset();
  req.stdio.in.Reset();
  req.stdio.out.Reset();
  req.stdio.err.Reset();
  req.joins.clear();

  pid_t final_pid = -1;
  UniqueFd pty_master;
  bool ready = false;
  std::optional<Error> failure;
  auto deadline = std::chrono::steady_clock::now() + kSetupTimeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(inter, SIGKILL);
      failure = Error::DeadlineExceeded(req.what + " did not get ready within " +
                                        std::to_string(kSetupTimeout.count()) + "s");
      break;
    }
    pollfd pfd{sync.get(), POLLIN, 0};
    int rc = poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    Msg m;
    iovec iov{&m, sizeof m};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = recvmsg(sync.get(), &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    UniqueFd passed;
    if (n >= 0) {
      for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          if (!passed) passed.Reset(fd);
          else close(fd);
        }
      }
    }
    if (n < 0) {
      failure = Error::Sys(errno, "read from " + req.what);
      break;
    }
    if (n == 0) break;  // every child end is closed
    if (static_cast<size_t>(n) < offsetof(Msg, text)) continue;
    switch (m.type) {
      case kPid:
        final_pid = m.value;
        break;
      case kReady:
        ready = true;
        break;
      case kPty:
        if (req.stdio.terminal && passed && !pty_master) pty_master = std::move(passed);
        break;
      case kError:
        if (!failure) {
          failure = Error(static_cast<Code>(m.value),
                          std::string(m.text, static_cast<size_t>(n) - offsetof(Msg, text)));
        }
        break;
      case kUserNs: {
        Status st = WriteIdMaps(inter, req);
        if (!st.ok()) {
          failure = std::move(st).error();
          kill(inter, SIGKILL);
        } else {
          char ok = 1;
          (void)!send(sync.get(), &ok, 1, MSG_NOSIGNAL);
        }
        break;
      }
      default:
        break;
    }
  }
  if (!failure && !ready) {
    failure = Error::Internal(req.what + " exited during setup");
  }
  if (!failure && final_pid <= 0) failure = Error::Internal(req.what + ": no pid reported");
  if (!failure && req.stdio.terminal && !pty_master) {
    failure = Error::Internal(req.what + ": no terminal received");
  }
  if (!failure && req.process->oom_score_adj) {
    Status st = WriteFile("/proc/" + std::to_string(final_pid) + "/oom_score_adj",
                          std::to_string(*req.process->oom_score_adj));
    if (!st.ok()) failure = std::move(st).error().Wrap("set oom_score_adj");
  }
  if (failure) {
    // The final process, if any, is blocked on the start channel: the pid
    // is still valid here.
    if (final_pid > 0) kill(final_pid, SIGKILL);
    return std::move(*failure).Wrap(req.what);
  }
  if (req.stdio.terminal) *req.pty_master_out = std::move(pty_master);
  return PendingProcess(final_pid, std::move(start_w), std::move(err_r));
}

}  // namespace cask::container
