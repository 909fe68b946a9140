#include "cmd/cask-agent/channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include <cerrno>
#include <thread>

#include "lib/base/fs.h"

namespace cask::agent {

Result<std::string> FindVirtioPort(const std::string& name, const std::string& sys_dir, const std::string& dev_dir) {
  DIR* dir = ::opendir(sys_dir.c_str());
  if (dir == nullptr) return Error::Sys(errno, "open " + sys_dir);
  std::string found;
  while (struct dirent* ent = ::readdir(dir)) {
    std::string entry = ent->d_name;
    if (entry == "." || entry == "..") continue;
    auto text = ReadFile(JoinPath(JoinPath(sys_dir, entry), "name"));
    if (!text.ok()) continue;
    std::string port_name = *text;
    while (!port_name.empty() && (port_name.back() == '\n' || port_name.back() == ' ')) port_name.pop_back();
    if (port_name == name) {
      found = JoinPath(dev_dir, entry);
      break;
    }
  }
  ::closedir(dir);
  if (found.empty()) return Error::NotFound("no virtio-serial port named " + name + " in " + sys_dir);
  return found;
}

Result<UniqueFd> OpenVirtioPort(const std::string& name, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto path = FindVirtioPort(name);
    if (path.ok()) {
      // The device node appears in devtmpfs right after the sysfs entry.
      auto fd = Open(*path, O_RDWR | O_NOCTTY);
      if (fd.ok() || std::chrono::steady_clock::now() >= deadline) return fd;
    } else if (std::chrono::steady_clock::now() >= deadline) {
      return std::move(path).error();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

PortState PollPort(int fd, int timeout_ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  if (r <= 0) return PortState::kIdle;
  // Without a host, virtio_console reports POLLHUP *and* POLLIN (a read
  // would not block: it returns 0), so the hang-up decides.
  if (p.revents & (POLLHUP | POLLERR)) return PortState::kHostAbsent;
  if (p.revents & POLLIN) return PortState::kReadable;
  return PortState::kIdle;
}

Result<UniqueFd> ListenVsock(unsigned port) {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::Sys(errno, "socket(AF_VSOCK)");
  UniqueFd sock(fd);
  struct sockaddr_vm addr = {};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0)
    return Error::Sys(errno, "bind vsock port " + std::to_string(port));
  if (::listen(fd, 16) != 0) return Error::Sys(errno, "listen vsock port " + std::to_string(port));
  return sock;
}

}  // namespace cask::agent
