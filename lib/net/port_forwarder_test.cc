// In a throwaway network namespace: the "guest" is a server on 127.0.0.2,
// the forwarder listens on 127.0.0.1, as containerd's dial would reach it.
#include "lib/net/port_forwarder.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "lib/net/netns.h"
#include "lib/net/netns_for_test.h"
#include "lib/net/rtnl.h"

namespace cask::net {
namespace {

constexpr uint16_t kPort = 18080;

sockaddr_in Addr(const char* ip, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  ::inet_pton(AF_INET, ip, &sa.sin_addr);
  sa.sin_port = htons(port);
  return sa;
}

// A socket made inside the namespace.
UniqueFd SocketIn(int ns) {
  UniqueFd fd;
  Status st = RunInNetns(ns, [&]() -> Status {
    fd.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    return Ok();
  });
  EXPECT_TRUE(st.ok());
  return fd;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

class PortForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    auto ns = NewTestNetns(/*lo_up=*/true);
    ASSERT_TRUE(ns.ok()) << ns.error().ToString();
    ns_ = std::move(ns->fd);
  }
  UniqueFd ns_;
};

TEST_F(PortForwarderTest, RelaysBothWaysWithHalfClose) {
  // The "guest": reads to EOF, answers, closes.
  UniqueFd srv = SocketIn(ns_.get());
  int one = 1;
  ::setsockopt(srv.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa = Addr("127.0.0.2", kPort);
  ASSERT_EQ(::bind(srv.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << strerror(errno);
  ASSERT_EQ(::listen(srv.get(), 4), 0);
  std::thread server([&] {
    int c = ::accept(srv.get(), nullptr, nullptr);
    if (c < 0) return;
    std::string got = ReadAll(c);
    std::string reply = "echo:" + got;
    (void)!::write(c, reply.data(), reply.size());
    ::close(c);
  });

  PortForwarder::Options o;
  o.netns_fd = ns_.get();
  o.target_ip = "127.0.0.2";
  auto pf = PortForwarder::Start(o);
  ASSERT_TRUE(pf.ok()) << pf.error().ToString();
  ASSERT_TRUE((*pf)->SetPorts({kPort}).ok());
  EXPECT_EQ((*pf)->listening(), std::set<uint16_t>{kPort});

  UniqueFd cl = SocketIn(ns_.get());
  sockaddr_in to = Addr("127.0.0.1", kPort);
  ASSERT_EQ(::connect(cl.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0) << strerror(errno);
  std::string big(200 * 1024, 'x');  // more than one buffer's worth
  ASSERT_EQ(::write(cl.get(), big.data(), big.size()), static_cast<ssize_t>(big.size()));
  ::shutdown(cl.get(), SHUT_WR);
  std::string got = ReadAll(cl.get());
  server.join();
  EXPECT_EQ(got.size(), big.size() + 5);
  EXPECT_EQ(got.substr(0, 5), "echo:");

  // Ports that go away stop being listened on.
  ASSERT_TRUE((*pf)->SetPorts({}).ok());
  EXPECT_TRUE((*pf)->listening().empty());
  UniqueFd cl2 = SocketIn(ns_.get());
  EXPECT_NE(::connect(cl2.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  (*pf)->Stop();
  (*pf)->Stop();
}

TEST_F(PortForwarderTest, NothingListeningInTheGuestClosesTheClient) {
  PortForwarder::Options o;
  o.netns_fd = ns_.get();
  o.target_ip = "127.0.0.2";
  auto pf = PortForwarder::Start(o);
  ASSERT_TRUE(pf.ok());
  ASSERT_TRUE((*pf)->SetPorts({kPort + 1}).ok());
  UniqueFd cl = SocketIn(ns_.get());
  sockaddr_in to = Addr("127.0.0.1", kPort + 1);
  ASSERT_EQ(::connect(cl.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  EXPECT_EQ(ReadAll(cl.get()), "");
}

TEST_F(PortForwarderTest, Bounds) {
  PortForwarder::Options o;
  o.netns_fd = ns_.get();
  o.target_ip = "127.0.0.2";
  o.max_ports = 2;
  auto pf = PortForwarder::Start(o);
  ASSERT_TRUE(pf.ok());
  auto st = (*pf)->SetPorts({1001, 1002, 1003});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), Code::kResourceExhausted);
  EXPECT_FALSE((*pf)->SetPorts({0}).ok());
  o.target_ip = "not-an-ip";
  EXPECT_FALSE(PortForwarder::Start(o).ok());
}

}  // namespace
}  // namespace cask::net
