// Boots real VMs under QEMU (TCG) with the guest assets that guest/build-assets
// made around guest/test-init.c (CASK_GUEST_TEST_DIR: vmlinux, initrd.img,
// kernel-release). The test init prints, on the agent port:
//   CASK-TEST-INIT-OK <release> / CASK-TEST-CMDLINE <cmdline> / CASK-TEST-SHARE <text>
// then echoes lines ("ECHO <line>") until it reads "poweroff".
#include <dirent.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <random>
#include <set>
#include <thread>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/hypervisor/qemu.h"
#include "lib/hypervisor/vm_leftovers.h"

namespace cask::hypervisor {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using ::testing::HasSubstr;

constexpr milliseconds kBootTimeout{120000};  // TCG on a loaded 2-core host: seconds, sometimes many

std::string AssetDir() { return CASK_GUEST_TEST_DIR; }

// Pids of this process's children (qemu, virtiofsd...).
std::set<pid_t> Children() {
  std::set<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    auto stat = ReadFile("/proc/" + std::string(e->d_name) + "/stat");
    if (!stat.ok()) continue;
    // pid (comm) state ppid ...: comm may contain spaces; parse after ')'.
    size_t rp = stat->rfind(')');
    if (rp == std::string::npos) continue;
    int ppid = 0;
    char state;
    if (std::sscanf(stat->c_str() + rp + 1, " %c %d", &state, &ppid) == 2 && ppid == ::getpid())
      out.insert(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

// Reads from fd until `n` newlines arrived or the deadline passed.
std::string ReadLines(int fd, int n, Clock::time_point deadline, Clock::time_point* first_byte = nullptr) {
  std::string buf;
  while (std::count(buf.begin(), buf.end(), '\n') < n) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char c[1024];
    ssize_t r = ::read(fd, c, sizeof c);
    if (r <= 0) break;
    if (buf.empty() && first_byte) *first_byte = Clock::now();
    buf.append(c, static_cast<size_t>(r));
  }
  return buf;
}

std::string HostRelease() {
  utsname u;
  ::uname(&u);
  return u.release;
}

class QemuBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(PathExists(AssetDir() + "/vmlinux")) << "run the hypervisor_guest_test_assets test first";
    auto rel = ReadFile(AssetDir() + "/kernel-release");
    ASSERT_TRUE(rel.ok());
    release_ = *rel;
    while (!release_.empty() && release_.back() == '\n') release_.pop_back();
    char tmpl[] = "/tmp/cask-hv-it.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    ASSERT_TRUE(MkdirAll(tmp_ + "/shared").ok());
    std::random_device rd;
    token_ = "token-" + std::to_string(rd()) + std::to_string(rd());
    ASSERT_TRUE(WriteFile(tmp_ + "/shared/cask-test.txt", token_ + "\n").ok());

    cfg_.id = "it1";
    cfg_.state_dir = tmp_ + "/state/it1";
    cfg_.qemu_path = "/usr/bin/qemu-system-x86_64";
    cfg_.virtiofsd_path = "/usr/lib/qemu/virtiofsd";
    cfg_.kernel = AssetDir() + "/vmlinux";
    cfg_.initrd = AssetDir() + "/initrd.img";
    cfg_.machine_type = "microvm";
    cfg_.accel = Accel::kAuto;
    cfg_.channel = ChannelRequest::kSerial;
    cfg_.shared_dir = tmp_ + "/shared";
    children_before_ = Children();
  }
  void TearDown() override {
    // Nothing may outlive a test: no child process, no state dir.
    EXPECT_EQ(Children(), children_before_) << "a child process was left behind";
    EXPECT_FALSE(PathExists(cfg_.state_dir)) << cfg_.state_dir << " was left behind";
    (void)RemoveAll(tmp_);
  }

  // Starts the VM, connects, reads the three hello lines. Returns the fd.
  UniqueFd BootAndGreet(std::unique_ptr<Vm>* vm, std::string* hello) {
    auto t0 = Clock::now();
    auto r = NewQemu()->Start(cfg_);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    if (!r.ok()) return UniqueFd();
    *vm = std::move(*r);
    auto t_started = Clock::now();
    auto fd = (*vm)->ConnectAgent(kBootTimeout);
    EXPECT_TRUE(fd.ok()) << fd.error().ToString();
    if (!fd.ok()) return UniqueFd();
    Clock::time_point first{};
    *hello = ReadLines(fd->get(), 3, t0 + kBootTimeout, &first);
    if (first != Clock::time_point{}) {
      auto ms = [](auto d) { return std::chrono::duration_cast<milliseconds>(d).count(); };
      std::cout << "[ timing ] " << cfg_.machine_type << ": Start returned after " << ms(t_started - t0)
                << " ms; spawn -> first agent byte " << ms(first - t0) << " ms" << std::endl;
    }
    EXPECT_THAT(*hello, HasSubstr("CASK-TEST-INIT-OK")) << "console: " << (*vm)->ConsoleTail(4096);
    return std::move(*fd);
  }

  std::string tmp_, token_, release_;
  VmSettings cfg_;
  std::set<pid_t> children_before_;
};

TEST_F(QemuBootTest, MicrovmTcgVirtiofsSerialBootsEchoesPausesAndStops) {
  std::unique_ptr<Vm> vm;
  std::string hello;
  UniqueFd fd = BootAndGreet(&vm, &hello);
  ASSERT_TRUE(fd.valid());
  EXPECT_EQ(vm->channel(), Channel::kSerial);
  // The guest runs the asset kernel, not the host's.
  EXPECT_THAT(hello, HasSubstr("CASK-TEST-INIT-OK " + release_ + "\n"));
  EXPECT_NE(release_, HostRelease());
  EXPECT_THAT(hello, HasSubstr("cask.channel=serial"));
  EXPECT_THAT(hello, HasSubstr(" quiet "));
  EXPECT_THAT(hello, HasSubstr("tsc_early_khz="));
  // The share made it through virtiofsd.
  EXPECT_THAT(hello, HasSubstr("CASK-TEST-SHARE " + token_ + "\n"));
  EXPECT_EQ(Children().size(), children_before_.size() + 2) << "expected qemu and virtiofsd";

  ASSERT_TRUE(WriteAll(fd.get(), "ping\n").ok());
  EXPECT_EQ(ReadLines(fd.get(), 1, Clock::now() + milliseconds(30000)), "ECHO ping\n");

  // Paused: no answer; resumed: the answer comes.
  ASSERT_TRUE(vm->Pause().ok());
  ASSERT_TRUE(WriteAll(fd.get(), "paused\n").ok());
  EXPECT_EQ(ReadLines(fd.get(), 1, Clock::now() + milliseconds(1000)), "");
  ASSERT_TRUE(vm->Resume().ok());
  EXPECT_EQ(ReadLines(fd.get(), 1, Clock::now() + milliseconds(30000)), "ECHO paused\n");

  EXPECT_FALSE(vm->Exited());
  EXPECT_TRUE(PathExists(vm->console_log_path()));
  EXPECT_THAT(vm->ConsoleTail(4096), HasSubstr("CASK-TEST-INIT-OK"));
  pid_t qemu_pid = vm->pid();
  auto t0 = Clock::now();
  ASSERT_TRUE(vm->Stop(milliseconds(5000)).ok());
  std::cout << "[ timing ] Stop took "
            << std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count() << " ms" << std::endl;
  EXPECT_EQ(::kill(qemu_pid, 0), -1);
  EXPECT_TRUE(vm->Exited());
  EXPECT_TRUE(vm->Stop(milliseconds(5000)).ok()) << "Stop is idempotent";
  EXPECT_FALSE(vm->ConnectAgent(milliseconds(100)).ok());
  EXPECT_FALSE(PathExists(cfg_.state_dir));
  EXPECT_EQ(vm->ConsoleTail(100), "");
}

// The confinement the shim uses by default: QEMU drops to nobody after
// opening its sockets, logs and devices (and still serves the agent
// channel, the share and QMP), QEMU and virtiofsd run in the pod's cgroup
// from spawn, the VM records them, and a killed virtiofsd takes the VM down.
TEST_F(QemuBootTest, RunsAsNobodyInItsCgroupAndDiesWithVirtiofsd) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  if (::getpwnam("nobody") == nullptr) GTEST_SKIP() << "no user nobody";
  cfg_.runas = "nobody";
  cfg_.cgroup.enabled = true;
  cfg_.cgroup.parent = "cask-it-" + std::to_string(::getpid());
  cfg_.cgroup.memory_overhead_mib = 512;
  cfg_.cgroup.cpu_quota_cores = 2;
  cfg_.cgroup.pids_max = 512;
  std::unique_ptr<Vm> vm;
  std::string hello;
  UniqueFd fd = BootAndGreet(&vm, &hello);
  ASSERT_TRUE(fd.valid());
  EXPECT_THAT(hello, HasSubstr("CASK-TEST-SHARE " + token_ + "\n"));
  auto status = ReadFile("/proc/" + std::to_string(vm->pid()) + "/status");
  ASSERT_TRUE(status.ok());
  EXPECT_THAT(*status, HasSubstr("Uid:\t65534\t65534\t65534\t65534"));
  ASSERT_TRUE(WriteAll(fd.get(), "ping\n").ok());
  EXPECT_EQ(ReadLines(fd.get(), 1, Clock::now() + milliseconds(30000)), "ECHO ping\n");
  ASSERT_TRUE(vm->Pause().ok());
  ASSERT_TRUE(vm->Resume().ok());

  auto rec = ReadHostProcesses(cfg_.state_dir);
  ASSERT_TRUE(rec.ok()) << rec.error().ToString();
  ASSERT_TRUE(rec->vmm && rec->virtiofsd);
  EXPECT_EQ(rec->vmm->pid, vm->pid());
  ASSERT_FALSE(rec->cgroup_dirs.empty());
  for (const auto& d : rec->cgroup_dirs) {
    auto procs = ReadFile(d + "/cgroup.procs");
    ASSERT_TRUE(procs.ok()) << d;
    EXPECT_THAT(*procs, HasSubstr(std::to_string(vm->pid()) + "\n")) << d;
    EXPECT_THAT(*procs, HasSubstr(std::to_string(rec->virtiofsd->pid) + "\n")) << d;
  }

  ASSERT_TRUE(SignalIdentified(*rec->virtiofsd, SIGKILL).ok());
  auto deadline = Clock::now() + milliseconds(30000);
  while (!vm->Exited() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(vm->Exited()) << "QEMU kept running without its virtiofsd";
  EXPECT_TRUE(vm->Stop(milliseconds(5000)).ok());
  for (const auto& d : rec->cgroup_dirs) {
    EXPECT_FALSE(PathExists(d)) << d;
    ::rmdir(Dirname(d).c_str());  // the test's parent
  }
}

TEST_F(QemuBootTest, GuestPowerOffIsSeenAsExit) {
  std::unique_ptr<Vm> vm;
  std::string hello;
  UniqueFd fd = BootAndGreet(&vm, &hello);
  ASSERT_TRUE(fd.valid());
  ASSERT_TRUE(WriteAll(fd.get(), "poweroff\n").ok());
  auto deadline = Clock::now() + milliseconds(60000);
  while (!vm->Exited() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(vm->Exited());
  EXPECT_THAT(vm->ConsoleTail(4096), HasSubstr("powering off"));
  EXPECT_TRUE(vm->Stop(milliseconds(5000)).ok());
}

TEST_F(QemuBootTest, Q35PciSerialWithoutShare) {
  cfg_.machine_type = "q35";
  cfg_.shared_dir.clear();
  cfg_.debug = true;
  std::unique_ptr<Vm> vm;
  std::string hello;
  UniqueFd fd = BootAndGreet(&vm, &hello);
  ASSERT_TRUE(fd.valid());
  EXPECT_THAT(hello, HasSubstr("CASK-TEST-INIT-OK " + release_ + "\n"));
  EXPECT_THAT(hello, HasSubstr("cask.debug=1"));
  EXPECT_THAT(hello, ::testing::Not(HasSubstr(" quiet")));
  EXPECT_THAT(hello, HasSubstr("CASK-TEST-SHARE none"));
  EXPECT_EQ(Children().size(), children_before_.size() + 1) << "expected only qemu";
  // The destructor stops the VM.
  vm.reset();
}

TEST_F(QemuBootTest, KernelPanicEndsTheVmWithTheConsoleTail) {
  cfg_.shared_dir.clear();
  cfg_.extra_kernel_params = {"rdinit=/no-such-init"};
  auto r = NewQemu()->Start(cfg_);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  auto& vm = *r;
  auto deadline = Clock::now() + kBootTimeout;
  while (!vm->Exited() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(50));
  ASSERT_TRUE(vm->Exited());
  EXPECT_THAT(vm->ConsoleTail(8192), HasSubstr("Kernel panic"));
  auto c = vm->ConnectAgent(milliseconds(1000));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Code::kUnavailable);
  EXPECT_THAT(c.error().ToString(), HasSubstr("Kernel panic"));
  EXPECT_TRUE(vm->Stop(milliseconds(5000)).ok());
}

TEST_F(QemuBootTest, MissingKernelIsNotFoundAndLeavesNothing) {
  cfg_.kernel = tmp_ + "/no-vmlinux";
  auto r = NewQemu()->Start(cfg_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_THAT(r.error().ToString(), HasSubstr(tmp_ + "/no-vmlinux"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("hypervisor.kernel"));
  EXPECT_FALSE(PathExists(tmp_ + "/state"));
}

TEST_F(QemuBootTest, QemuStartFailureReportsQemuStderrAndLeavesNothing) {
  // A kernel QEMU cannot load: QEMU itself exits during startup.
  ASSERT_TRUE(WriteFile(tmp_ + "/junk-kernel", std::string(4096, 'x')).ok());
  cfg_.kernel = tmp_ + "/junk-kernel";
  auto r = NewQemu()->Start(cfg_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().ToString(), HasSubstr("qemu exited during startup"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("(status 1): qemu"));  // QEMU's own message follows
  EXPECT_FALSE(PathExists(tmp_ + "/state/it1"));
}

}  // namespace
}  // namespace cask::hypervisor
