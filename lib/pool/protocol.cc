#include "lib/pool/protocol.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lib/base/fs.h"
#include "lib/net/netns.h"
#include "lib/net/rtnl.h"

namespace cask::pool {

namespace {

// Every string field of a key or a VM description: paths and kernel
// parameters, far below this.
constexpr size_t kMaxStringBytes = 4096;
constexpr size_t kMaxExtraParams = 64;

Result<sockaddr_un> Address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(a.sun_path))
    return Error::InvalidArgument("pool socket path \"" + path + "\" is empty or too long");
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

std::string_view RequestWord(hypervisor::ChannelRequest c) {
  switch (c) {
    case hypervisor::ChannelRequest::kVsock: return "vsock";
    case hypervisor::ChannelRequest::kSerial: return "serial";
    case hypervisor::ChannelRequest::kAuto: break;
  }
  return "auto";
}

Result<std::string> Str(const nlohmann::json& j, const char* field) {
  if (!j.is_object() || !j.contains(field) || !j[field].is_string())
    return Error::InvalidArgument(std::string("field \"") + field + "\": missing or not a string");
  std::string s = j[field].get<std::string>();
  if (s.size() > kMaxStringBytes) return Error::InvalidArgument(std::string("field \"") + field + "\": too long");
  return s;
}

Result<uint64_t> Num(const nlohmann::json& j, const char* field) {
  if (!j.is_object() || !j.contains(field) || !j[field].is_number_unsigned())
    return Error::InvalidArgument(std::string("field \"") + field + "\": missing or not a number");
  return j[field].get<uint64_t>();
}

Result<bool> Bool(const nlohmann::json& j, const char* field) {
  if (!j.is_object() || !j.contains(field) || !j[field].is_boolean())
    return Error::InvalidArgument(std::string("field \"") + field + "\": missing or not a boolean");
  return j[field].get<bool>();
}

Status CheckSocket(int fd, const char* what) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Error::Sys(errno, std::string("fstat ") + what);
  if (!S_ISSOCK(st.st_mode)) return Error::InvalidArgument(std::string(what) + " is not a socket");
  return Ok();
}

Status CheckPipe(int fd, const char* what) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Error::Sys(errno, std::string("fstat ") + what);
  if (!S_ISFIFO(st.st_mode)) return Error::InvalidArgument(std::string(what) + " is not a pipe");
  return Ok();
}

}  // namespace

Status SendMessage(int sock, const nlohmann::json& body, const std::vector<int>& fds) {
  std::string data = body.dump();
  if (data.size() > kMaxMessageBytes) return Error::InvalidArgument("pool message too large");
  if (fds.size() > kMaxFds) return Error::InvalidArgument("too many fds for one pool message");
  iovec iov{data.data(), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EPIPE || errno == ECONNRESET) return Error::Sys(Code::kUnavailable, errno, "send to the pool peer");
    return Error::Sys(errno, "send to the pool peer");
  }
  return Ok();
}

Result<Message> ReceiveMessage(int sock, std::chrono::milliseconds timeout) {
  pollfd p{sock, POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (r > 0) break;
    if (r == 0) return Error::DeadlineExceeded("no answer from the pool peer within " +
                                               std::to_string(timeout.count()) + " ms");
    if (errno != EINTR) return Error::Sys(errno, "poll the pool socket");
  }
  std::string data(kMaxMessageBytes + 1, '\0');
  iovec iov{data.data(), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::Sys(errno == ECONNRESET ? Code::kUnavailable : Code::kInternal, errno, "receive from the pool peer");
  Message m;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      m.fds.emplace_back(fd);
    }
  }
  if (n == 0) return Error::Unavailable("the pool peer closed the connection");
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || static_cast<size_t>(n) > kMaxMessageBytes)
    return Error::InvalidArgument("pool message truncated (too large, or too many fds)");
  m.body = nlohmann::json::parse(data.data(), data.data() + n, nullptr, /*allow_exceptions=*/false);
  if (!m.body.is_object()) return Error::InvalidArgument("pool message is not a JSON object");
  return m;
}

Result<UniqueFd> Connect(const std::string& path) {
  CASK_ASSIGN_OR_RETURN(sockaddr_un a, Address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Error::Sys(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int e = errno;
    if (e == ENOENT) return Error::Sys(Code::kNotFound, e, "connect to the pool at " + path);
    if (e == ECONNREFUSED || e == EAGAIN) return Error::Sys(Code::kUnavailable, e, "connect to the pool at " + path);
    return Error::Sys(e, "connect to the pool at " + path);
  }
  return fd;
}

Result<UniqueFd> Listen(const std::string& path) {
  CASK_ASSIGN_OR_RETURN(sockaddr_un a, Address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Error::Sys(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Error::Sys(errno, "remove stale socket " + path);
  // Created 0600 (umask for the bind), re-checked with chmod.
  mode_t old = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  int e = errno;
  ::umask(old);
  if (rc != 0) return Error::Sys(e, "bind " + path);
  if (::chmod(path.c_str(), 0600) != 0) return Error::Sys(errno, "chmod 0600 " + path);
  if (::listen(fd.get(), 64) != 0) return Error::Sys(errno, "listen on " + path);
  return fd;
}

VmKey KeyOf(const hypervisor::VmSettings& s) {
  VmKey k;
  k.qemu_path = s.qemu_path;
  k.kernel = s.kernel;
  k.initrd = s.initrd;
  k.machine_type = s.machine_type;
  k.accel = std::string(hypervisor::AccelWord(s.accel));
  k.channel = std::string(RequestWord(s.channel));
  k.vcpus = s.vcpus;
  k.memory_mib = s.memory_mib;
  k.tcg_tb_size_mib = s.tcg_tb_size_mib;
  k.kernel_params = s.kernel_params;
  k.extra_kernel_params = s.extra_kernel_params;
  k.virtiofsd_path = s.virtiofsd_path;
  k.virtiofs_cache = s.virtiofs_cache;
  k.runas = s.runas;
  k.free_page_reporting = s.free_page_reporting;
  k.debug = s.debug;
  k.nic = s.wants_ready_nic || !s.nics.empty();
  return k;
}

nlohmann::json ToJson(const VmKey& k) {
  return {{"qemu_path", k.qemu_path},
          {"kernel", k.kernel},
          {"initrd", k.initrd},
          {"machine_type", k.machine_type},
          {"accel", k.accel},
          {"channel", k.channel},
          {"vcpus", k.vcpus},
          {"memory_mib", k.memory_mib},
          {"tcg_tb_size_mib", k.tcg_tb_size_mib},
          {"kernel_params", k.kernel_params},
          {"extra_kernel_params", k.extra_kernel_params},
          {"virtiofsd_path", k.virtiofsd_path},
          {"virtiofs_cache", k.virtiofs_cache},
          {"runas", k.runas},
          {"free_page_reporting", k.free_page_reporting},
          {"debug", k.debug},
          {"nic", k.nic}};
}

Result<VmKey> KeyFromJson(const nlohmann::json& j) {
  VmKey k;
  CASK_ASSIGN_OR_RETURN(k.qemu_path, Str(j, "qemu_path"));
  CASK_ASSIGN_OR_RETURN(k.kernel, Str(j, "kernel"));
  CASK_ASSIGN_OR_RETURN(k.initrd, Str(j, "initrd"));
  CASK_ASSIGN_OR_RETURN(k.machine_type, Str(j, "machine_type"));
  CASK_ASSIGN_OR_RETURN(k.accel, Str(j, "accel"));
  CASK_ASSIGN_OR_RETURN(k.channel, Str(j, "channel"));
  CASK_ASSIGN_OR_RETURN(uint64_t vcpus, Num(j, "vcpus"));
  CASK_ASSIGN_OR_RETURN(uint64_t mem, Num(j, "memory_mib"));
  CASK_ASSIGN_OR_RETURN(uint64_t tb, Num(j, "tcg_tb_size_mib"));
  if (vcpus > 1024 || mem > (1u << 24) || tb > (1u << 24)) return Error::InvalidArgument("key: number out of range");
  k.vcpus = static_cast<uint32_t>(vcpus);
  k.memory_mib = static_cast<uint32_t>(mem);
  k.tcg_tb_size_mib = static_cast<uint32_t>(tb);
  CASK_ASSIGN_OR_RETURN(k.kernel_params, Str(j, "kernel_params"));
  if (!j.contains("extra_kernel_params") || !j["extra_kernel_params"].is_array() ||
      j["extra_kernel_params"].size() > kMaxExtraParams)
    return Error::InvalidArgument("field \"extra_kernel_params\": missing, not an array or too long");
  for (const auto& p : j["extra_kernel_params"]) {
    if (!p.is_string() || p.get<std::string>().size() > kMaxStringBytes)
      return Error::InvalidArgument("field \"extra_kernel_params\": not a list of short strings");
    k.extra_kernel_params.push_back(p.get<std::string>());
  }
  CASK_ASSIGN_OR_RETURN(k.virtiofsd_path, Str(j, "virtiofsd_path"));
  CASK_ASSIGN_OR_RETURN(k.virtiofs_cache, Str(j, "virtiofs_cache"));
  CASK_ASSIGN_OR_RETURN(k.runas, Str(j, "runas"));
  CASK_ASSIGN_OR_RETURN(k.free_page_reporting, Bool(j, "free_page_reporting"));
  CASK_ASSIGN_OR_RETURN(k.debug, Bool(j, "debug"));
  CASK_ASSIGN_OR_RETURN(k.nic, Bool(j, "nic"));
  return k;
}

std::string Mismatch(const VmKey& w, const VmKey& h) {
  auto diff = [](const char* name, const auto& a, const auto& b) -> std::string {
    if (a == b) return "";
    if constexpr (std::is_same_v<std::decay_t<decltype(a)>, std::string>)
      return std::string(name) + ": wanted \"" + BoundedString(a, 200) + "\", the pool's is \"" +
             BoundedString(b, 200) + "\"";
    else if constexpr (std::is_same_v<std::decay_t<decltype(a)>, std::vector<std::string>>)
      return std::string(name) + ": differ";
    else
      return std::string(name) + ": wanted " + std::to_string(a) + ", the pool's is " + std::to_string(b);
  };
  for (std::string d : {diff("vcpus", w.vcpus, h.vcpus), diff("memory_mib", w.memory_mib, h.memory_mib),
                        diff("kernel", w.kernel, h.kernel), diff("initrd", w.initrd, h.initrd),
                        diff("kernel_params", w.kernel_params, h.kernel_params),
                        diff("extra_kernel_params", w.extra_kernel_params, h.extra_kernel_params),
                        diff("qemu_path", w.qemu_path, h.qemu_path), diff("machine_type", w.machine_type, h.machine_type),
                        diff("accel", w.accel, h.accel), diff("channel", w.channel, h.channel),
                        diff("tcg_tb_size_mib", w.tcg_tb_size_mib, h.tcg_tb_size_mib),
                        diff("virtiofsd_path", w.virtiofsd_path, h.virtiofsd_path),
                        diff("virtiofs_cache", w.virtiofs_cache, h.virtiofs_cache), diff("runas", w.runas, h.runas),
                        diff("free_page_reporting", w.free_page_reporting, h.free_page_reporting),
                        diff("debug", w.debug, h.debug)})
    if (!d.empty()) return d;
  if (w.nic && !h.nic) return "nic: the pod needs a NIC (it has a network namespace), the pool's VMs have none";
  return "";
}

nlohmann::json HandoverJson(const hypervisor::VmHandover& h) {
  nlohmann::json j = {{"state_dir", h.state_dir},
          {"channel", std::string(hypervisor::ChannelWord(h.channel))},
          {"guest_cid", h.guest_cid},
          {"vmm_pid", static_cast<uint64_t>(h.vmm.pid)},
          {"vmm_start", h.vmm.start_time},
          {"virtiofsd_pid", static_cast<uint64_t>(h.virtiofsd.pid)},
          {"virtiofsd_start", h.virtiofsd.start_time},
          {"console_tail", BoundedString(h.console_tail, hypervisor::kHandoverConsoleTailBytes)}};
  if (h.nic) j["nic"] = {{"tap_name", h.nic->tap_name}, {"guest_mac", h.nic->guest_mac}};
  return j;
}

std::vector<int> HandoverFds(const hypervisor::VmHandover& h) {
  std::vector<int> fds = {h.vmm_pidfd.get(), h.virtiofsd_pidfd.get(), h.qmp.get(),
                          h.console.get(),   h.qemu_stderr.get(),     h.virtiofsd_stderr.get()};
  if (h.nic) {
    fds.push_back(h.nic->tap.get());
    fds.push_back(h.nic->netns.get());
  }
  return fds;
}

Result<hypervisor::VmHandover> HandoverFromMessage(const nlohmann::json& vm, std::vector<UniqueFd> fds,
                                                   const std::string& vms_dir) {
  const bool with_nic = vm.contains("nic");
  const size_t want_fds = with_nic ? size_t{kHandoverFdsWithNic} : size_t{kHandoverFds};
  if (fds.size() != want_fds)
    return Error::InvalidArgument("handover: " + std::to_string(fds.size()) + " fds, expected " +
                                  std::to_string(want_fds));
  hypervisor::VmHandover h;
  CASK_ASSIGN_OR_RETURN(h.state_dir, Str(vm, "state_dir"));
  if (h.state_dir.empty() || h.state_dir.front() != '/' || Dirname(h.state_dir) != vms_dir ||
      Basename(h.state_dir) == "." || Basename(h.state_dir) == ".." ||
      h.state_dir.find("/../") != std::string::npos)
    return Error::InvalidArgument("handover: state dir " + BoundedString(h.state_dir, 200) + " is not below " +
                                  vms_dir);
  CASK_ASSIGN_OR_RETURN(std::string channel, Str(vm, "channel"));
  if (channel != "serial" && channel != "vsock") return Error::InvalidArgument("handover: bad channel");
  h.channel = channel == "vsock" ? hypervisor::Channel::kVsock : hypervisor::Channel::kSerial;
  CASK_ASSIGN_OR_RETURN(uint64_t cid, Num(vm, "guest_cid"));
  CASK_ASSIGN_OR_RETURN(uint64_t vpid, Num(vm, "vmm_pid"));
  CASK_ASSIGN_OR_RETURN(uint64_t vstart, Num(vm, "vmm_start"));
  CASK_ASSIGN_OR_RETURN(uint64_t fpid, Num(vm, "virtiofsd_pid"));
  CASK_ASSIGN_OR_RETURN(uint64_t fstart, Num(vm, "virtiofsd_start"));
  if (cid > UINT32_MAX || vpid == 0 || vpid > 4194304 || fpid == 0 || fpid > 4194304)
    return Error::InvalidArgument("handover: pid or CID out of range");
  h.guest_cid = static_cast<uint32_t>(cid);
  h.vmm = {static_cast<pid_t>(vpid), vstart};
  h.virtiofsd = {static_cast<pid_t>(fpid), fstart};
  CASK_ASSIGN_OR_RETURN(h.console_tail, Str(vm, "console_tail"));
  h.console_tail = BoundedString(h.console_tail, hypervisor::kHandoverConsoleTailBytes);

  CASK_ASSIGN_OR_RETURN(h.vmm_pidfd, sys::Pidfd::FromFd(std::move(fds[kFdVmmPidfd])).Context("qemu's pidfd"));
  CASK_ASSIGN_OR_RETURN(h.virtiofsd_pidfd,
                        sys::Pidfd::FromFd(std::move(fds[kFdVirtiofsdPidfd])).Context("virtiofsd's pidfd"));
  if (h.vmm_pidfd.pid() != h.vmm.pid || h.virtiofsd_pidfd.pid() != h.virtiofsd.pid)
    return Error::InvalidArgument("handover: the pidfds do not name the described processes");
  CASK_TRY(CheckSocket(fds[kFdQmp].get(), "the QMP fd"));
  CASK_TRY(CheckSocket(fds[kFdConsole].get(), "the console fd"));
  CASK_TRY(CheckPipe(fds[kFdQemuStderr].get(), "qemu's stderr fd"));
  CASK_TRY(CheckPipe(fds[kFdVirtiofsdStderr].get(), "virtiofsd's stderr fd"));
  h.qmp = std::move(fds[kFdQmp]);
  h.console = std::move(fds[kFdConsole]);
  h.qemu_stderr = std::move(fds[kFdQemuStderr]);
  h.virtiofsd_stderr = std::move(fds[kFdVirtiofsdStderr]);
  if (with_nic) {
    const nlohmann::json& n = vm["nic"];
    if (!n.is_object()) return Error::InvalidArgument("handover: \"nic\" is not an object");
    hypervisor::ReadyNic nic;
    CASK_ASSIGN_OR_RETURN(nic.tap_name, Str(n, "tap_name"));
    CASK_ASSIGN_OR_RETURN(nic.guest_mac, Str(n, "guest_mac"));
    if (nic.tap_name.empty() || nic.tap_name.size() >= IFNAMSIZ || nic.tap_name.find('/') != std::string::npos)
      return Error::InvalidArgument("handover: bad TAP name");
    if (!net::ParseMac(nic.guest_mac).ok()) return Error::InvalidArgument("handover: bad guest MAC");
    struct stat st{};
    if (::fstat(fds[kFdTap].get(), &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(10, 200))
      return Error::InvalidArgument("handover: the TAP fd is not /dev/net/tun");
    CASK_ASSIGN_OR_RETURN(nic.netns, net::OpenNetns("/proc/self/fd/" + std::to_string(fds[kFdTapNetns].get()))
                                         .Context("handover: the TAP's namespace fd"));
    nic.tap = std::move(fds[kFdTap]);
    h.nic = std::move(nic);
  }
  return h;
}

}  // namespace cask::pool
