#include "lib/pool/protocol.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "lib/base/process.h"
#include "lib/pool/pooled_hypervisor.h"

namespace cask::pool {
namespace {

using std::chrono::milliseconds;

hypervisor::VmSettings Settings() {
  hypervisor::VmSettings s;
  s.qemu_path = "/usr/bin/qemu-system-x86_64";
  s.kernel = "/usr/share/cask/vmlinux";
  s.initrd = "/usr/share/cask/initrd.img";
  s.vcpus = 1;
  s.memory_mib = 256;
  s.kernel_params = "quiet";
  s.extra_kernel_params = {"a=1"};
  return s;
}

std::pair<UniqueFd, UniqueFd> SeqPair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

TEST(PoolKey, RoundTripAndMismatch) {
  VmKey k = KeyOf(Settings());
  auto back = KeyFromJson(ToJson(k));
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ(*back, k);
  EXPECT_EQ(Mismatch(k, k), "");

  hypervisor::VmSettings bigger = Settings();
  bigger.memory_mib = 512;
  EXPECT_EQ(Mismatch(KeyOf(bigger), k), "memory_mib: wanted 512, the pool's is 256");
  hypervisor::VmSettings other_kernel = Settings();
  other_kernel.kernel = "/boot/other";
  EXPECT_NE(Mismatch(KeyOf(other_kernel), k).find("kernel: wanted \"/boot/other\""), std::string::npos);
  hypervisor::VmSettings params = Settings();
  params.extra_kernel_params.push_back("b=2");
  EXPECT_EQ(Mismatch(KeyOf(params), k), "extra_kernel_params: differ");

  // The NIC: a pod that wants one needs a VM with one; a pod that does not
  // takes either.
  hypervisor::VmSettings netns_pod = Settings();
  netns_pod.wants_ready_nic = true;
  VmKey with_nic = KeyOf(netns_pod);
  EXPECT_TRUE(with_nic.nic);
  EXPECT_EQ(*KeyFromJson(ToJson(with_nic)), with_nic);
  EXPECT_NE(Mismatch(with_nic, k).find("nic: the pod needs a NIC"), std::string::npos);
  EXPECT_EQ(Mismatch(with_nic, with_nic), "");
  EXPECT_EQ(Mismatch(k, with_nic), "");

  nlohmann::json j = ToJson(k);
  j.erase("memory_mib");
  EXPECT_EQ(KeyFromJson(j).error().code(), Code::kInvalidArgument);
  j = ToJson(k);
  j["kernel"] = 7;
  EXPECT_EQ(KeyFromJson(j).error().code(), Code::kInvalidArgument);
}

TEST(PoolProtocol, MessagesCarryFds) {
  auto [a, b] = SeqPair();
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  ASSERT_TRUE(SendMessage(a.get(), {{"op", "x"}}, {w.get()}).ok());
  auto m = ReceiveMessage(b.get(), milliseconds(1000));
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  EXPECT_EQ(m->body["op"], "x");
  ASSERT_EQ(m->fds.size(), 1u);
  ASSERT_EQ(::write(m->fds[0].get(), "z", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(r.get(), &c, 1), 1);
  EXPECT_EQ(c, 'z');

  // Not an object; then nothing (deadline); then the peer gone.
  ASSERT_EQ(::send(a.get(), "[1]", 3, 0), 3);
  EXPECT_EQ(ReceiveMessage(b.get(), milliseconds(1000)).error().code(), Code::kInvalidArgument);
  EXPECT_EQ(ReceiveMessage(b.get(), milliseconds(10)).error().code(), Code::kDeadlineExceeded);
  a.Reset();
  EXPECT_EQ(ReceiveMessage(b.get(), milliseconds(1000)).error().code(), Code::kUnavailable);
}

// A real handover's fds: pidfds of two children, sockets, pipes.
struct FakeVm {
  ChildProcess vmm, fsd;
  hypervisor::VmHandover h;
  FakeVm(const std::string& dir) {
    SpawnOptions so;
    vmm = std::move(Spawn({"/bin/sleep", "60"}, so).value());
    fsd = std::move(Spawn({"/bin/sleep", "60"}, so).value());
    h.state_dir = dir;
    h.vmm = hypervisor::IdentityOf(vmm.pid()).value();
    h.virtiofsd = hypervisor::IdentityOf(fsd.pid()).value();
    h.vmm_pidfd = sys::Pidfd::Open(vmm.pid()).value();
    h.virtiofsd_pidfd = sys::Pidfd::Open(fsd.pid()).value();
    int s[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
    h.qmp.Reset(s[0]);
    ::close(s[1]);
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
    h.console.Reset(s[0]);
    ::close(s[1]);
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    h.qemu_stderr.Reset(p[0]);
    ::close(p[1]);
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    h.virtiofsd_stderr.Reset(p[0]);
    ::close(p[1]);
    h.console_tail = "booted\n";
  }
};

std::vector<UniqueFd> Received(const FakeVm& v) {
  auto [a, b] = SeqPair();
  EXPECT_TRUE(SendMessage(a.get(), {{"x", 1}}, HandoverFds(v.h)).ok());
  auto m = ReceiveMessage(b.get(), milliseconds(1000));
  EXPECT_TRUE(m.ok());
  return std::move(m->fds);
}

TEST(PoolProtocol, HandoverChecksWhatArrives) {
  FakeVm v("/run/pool-test/vms/p1-0");
  auto ok = HandoverFromMessage(HandoverJson(v.h), Received(v), "/run/pool-test/vms");
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  EXPECT_EQ(ok->vmm, v.h.vmm);
  EXPECT_EQ(ok->vmm_pidfd.pid(), v.vmm.pid());
  EXPECT_EQ(ok->virtiofsd_pidfd.pid(), v.fsd.pid());
  EXPECT_EQ(ok->console_tail, "booted\n");

  // A directory elsewhere than the pool's VMs.
  for (std::string dir : {"/run/cask/p1-0", "/run/pool-test/vms/a/b", "/run/pool-test/vms/..", "relative"}) {
    nlohmann::json j = HandoverJson(v.h);
    j["state_dir"] = dir;
    auto r = HandoverFromMessage(j, Received(v), "/run/pool-test/vms");
    ASSERT_FALSE(r.ok()) << dir;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << dir;
  }
  // Pids that the pidfds do not name.
  nlohmann::json swapped = HandoverJson(v.h);
  swapped["vmm_pid"] = static_cast<uint64_t>(v.h.virtiofsd.pid);
  swapped["virtiofsd_pid"] = static_cast<uint64_t>(v.h.vmm.pid);
  EXPECT_EQ(HandoverFromMessage(swapped, Received(v), "/run/pool-test/vms").error().code(), Code::kInvalidArgument);
  // Too few fds; a pipe where a pidfd belongs.
  auto fds = Received(v);
  fds.pop_back();
  EXPECT_EQ(HandoverFromMessage(HandoverJson(v.h), std::move(fds), "/run/pool-test/vms").error().code(),
            Code::kInvalidArgument);
  fds = Received(v);
  std::swap(fds[kFdVmmPidfd], fds[kFdQemuStderr]);
  EXPECT_FALSE(HandoverFromMessage(HandoverJson(v.h), std::move(fds), "/run/pool-test/vms").ok());
}

// A VM with a NIC also sends a /dev/net/tun fd and a network namespace fd,
// each checked for what it is.
TEST(PoolProtocol, HandoverCarriesTheNic) {
  if (::access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "needs /dev/net/tun";
  FakeVm v("/run/pool-test/vms/p1-0");
  auto nic = [] {
    return hypervisor::ReadyNic{UniqueFd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC)),
                                UniqueFd(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)), "cpool0",
                                "02:ca:5c:00:00:01"};
  };
  v.h.nic = nic();
  auto ok = HandoverFromMessage(HandoverJson(v.h), Received(v), "/run/pool-test/vms");
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  ASSERT_TRUE(ok->nic.has_value());
  EXPECT_EQ(ok->nic->tap_name, "cpool0");
  EXPECT_EQ(ok->nic->guest_mac, "02:ca:5c:00:00:01");
  EXPECT_TRUE(ok->nic->tap.valid());
  EXPECT_TRUE(ok->nic->netns.valid());

  // Bad name, bad MAC, the two fds swapped, the NIC's fds missing.
  for (auto [field, value] : {std::pair{"tap_name", "a-name-far-too-long"}, std::pair{"guest_mac", "02:ca:5c"}}) {
    nlohmann::json j = HandoverJson(v.h);
    j["nic"][field] = value;
    EXPECT_EQ(HandoverFromMessage(j, Received(v), "/run/pool-test/vms").error().code(), Code::kInvalidArgument)
        << field;
  }
  auto fds = Received(v);
  std::swap(fds[kFdTap], fds[kFdTapNetns]);
  EXPECT_EQ(HandoverFromMessage(HandoverJson(v.h), std::move(fds), "/run/pool-test/vms").error().code(),
            Code::kInvalidArgument);
  fds = Received(v);
  fds.resize(kHandoverFds);
  EXPECT_EQ(HandoverFromMessage(HandoverJson(v.h), std::move(fds), "/run/pool-test/vms").error().code(),
            Code::kInvalidArgument);
}

// A pool that answers one take with `reply` (and the fake VM's fds when
// asked), then reports what the taker said next.
struct FakePool {
  std::string dir, socket;
  UniqueFd listen;
  std::thread thread;
  std::string after;  // the taker's next message's op, or "closed"
  explicit FakePool(nlohmann::json reply, const hypervisor::VmHandover* fds = nullptr) {
    char tmpl[] = "/tmp/cask-pool-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    socket = dir + "/pool.sock";
    listen = Listen(socket).value();
    thread = std::thread([this, reply, fds] {
      UniqueFd c(::accept4(listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
      auto req = ReceiveMessage(c.get(), milliseconds(5000));
      if (!req.ok() || req->body["op"] != "take") return;
      (void)SendMessage(c.get(), reply, fds ? HandoverFds(*fds) : std::vector<int>{});
      auto next = ReceiveMessage(c.get(), milliseconds(5000));
      after = next.ok() ? next->body.value("op", "") : "closed";
    });
  }
  ~FakePool() {
    thread.join();
    ::unlink(socket.c_str());
    ::rmdir(dir.c_str());
  }
};

std::unique_ptr<hypervisor::Hypervisor> Pooled(const std::string& socket, const std::string& state_dir = "/tmp") {
  PooledOptions o;
  o.pool.socket = socket;
  o.pool.state_dir = state_dir;
  return NewPooled(std::move(o));
}

hypervisor::VmSettings PodSettings() {
  hypervisor::VmSettings s = Settings();
  s.id = "pod";
  s.state_dir = "/tmp/cask-pool-test-nonexistent/pod";
  s.shared_dir = s.state_dir + "/shared";
  s.cgroup.enabled = true;
  return s;
}

TEST(PooledHypervisor, FallsBackWithoutAPool) {
  auto hv = Pooled("/tmp/cask-pool-test-no-such.sock");
  auto r = hv->TakeReady(PodSettings());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound) << r.error().ToString();

  PooledOptions off;
  off.pool.enabled = false;
  EXPECT_EQ(NewPooled(std::move(off))->TakeReady(PodSettings()).error().code(), Code::kFailedPrecondition);
  hypervisor::VmSettings with_nic = PodSettings();
  with_nic.nics.push_back({3, "aa:bb:cc:dd:ee:ff"});
  EXPECT_EQ(hv->TakeReady(with_nic).error().code(), Code::kFailedPrecondition);
  hypervisor::VmSettings no_cgroup = PodSettings();
  no_cgroup.cgroup.enabled = false;
  EXPECT_EQ(hv->TakeReady(no_cgroup).error().code(), Code::kFailedPrecondition);
}

TEST(PooledHypervisor, FallsBackOnRefusal) {
  FakePool pool({{"ok", false}, {"reason", "no ready VM"}});
  auto r = Pooled(pool.socket)->TakeReady(PodSettings());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kUnavailable);
  EXPECT_NE(r.error().ToString().find("no ready VM"), std::string::npos);
}

TEST(PooledHypervisor, KillsAMismatchedHandover) {
  FakeVm v("/tmp/vms/p1-0");
  hypervisor::VmSettings other = Settings();
  other.memory_mib = 1024;
  {
    FakePool pool({{"ok", true}, {"vm", HandoverJson(v.h)}, {"key", ToJson(KeyOf(other))}}, &v.h);
    auto r = Pooled(pool.socket, "/tmp")->TakeReady(PodSettings());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().ToString().find("memory_mib"), std::string::npos) << r.error().ToString();
    pool.thread.join();
    pool.thread = std::thread([] {});
    EXPECT_EQ(pool.after, "closed");  // never acknowledged: the pool kills it too
  }
  // The taker killed what it was handed.
  auto st = v.vmm.WaitFor(milliseconds(5000));
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ(**st, 128 + SIGKILL);
  st = v.fsd.WaitFor(milliseconds(5000));
  ASSERT_TRUE(st.ok() && st->has_value());
}

TEST(PooledHypervisor, KillsAHandoverFromElsewhere) {
  FakeVm v("/elsewhere/p1-0");
  FakePool pool({{"ok", true}, {"vm", HandoverJson(v.h)}, {"key", ToJson(KeyOf(Settings()))}}, &v.h);
  auto r = Pooled(pool.socket, "/tmp")->TakeReady(PodSettings());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().ToString();
}

// A pod with a network namespace: a VM without a NIC (whatever the pool's
// key claims) is killed, never adopted.
TEST(PooledHypervisor, KillsANiclessHandoverForAPodThatWantsOne) {
  FakeVm v("/tmp/vms/p1-0");
  hypervisor::VmSettings pod = PodSettings();
  pod.wants_ready_nic = true;
  {
    FakePool pool({{"ok", true}, {"vm", HandoverJson(v.h)}, {"key", ToJson(KeyOf(pod))}}, &v.h);
    auto r = Pooled(pool.socket, "/tmp")->TakeReady(pod);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), Code::kFailedPrecondition) << r.error().ToString();
    EXPECT_NE(r.error().ToString().find("without a NIC"), std::string::npos) << r.error().ToString();
    pool.thread.join();
    pool.thread = std::thread([] {});
    EXPECT_EQ(pool.after, "closed");
  }
  auto st = v.vmm.WaitFor(milliseconds(5000));
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ(**st, 128 + SIGKILL);
}

}  // namespace
}  // namespace cask::pool
