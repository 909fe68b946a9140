#include "lib/container/device_filter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>

#include "lib/base/fs.h"

namespace cask::container {
namespace {

oci::DeviceCgroup Rule(bool allow, std::string type, std::string access, std::optional<int64_t> major = {},
                    std::optional<int64_t> minor = {}) {
  oci::DeviceCgroup d;
  d.allow = allow;
  d.type = std::move(type);
  d.access = std::move(access);
  d.major = major;
  d.minor = minor;
  return d;
}

constexpr uint32_t kR = BPF_DEVCG_ACC_READ, kW = BPF_DEVCG_ACC_WRITE, kM = BPF_DEVCG_ACC_MKNOD;
constexpr uint32_t kC = BPF_DEVCG_DEV_CHAR, kB = BPF_DEVCG_DEV_BLOCK;

// Runs the program the way the kernel would for one access: a tiny
// interpreter of the instructions BuildDeviceProgram emits (anything else
// fails the test, so the builder cannot drift outside what is checked).
int Eval(const std::vector<bpf_insn>& prog, uint32_t type, uint32_t access, uint32_t major, uint32_t minor) {
  uint32_t ctx[3] = {(access << 16) | type, major, minor};
  uint64_t r[11] = {};
  size_t pc = 0;
  for (int steps = 0; steps < 10000 && pc < prog.size(); ++steps) {
    const bpf_insn& i = prog[pc++];
    switch (i.code) {
      case BPF_LDX | BPF_MEM | BPF_W:
        EXPECT_EQ(i.src_reg, BPF_REG_1);
        EXPECT_TRUE(i.off == 0 || i.off == 4 || i.off == 8);
        r[i.dst_reg] = ctx[i.off / 4];
        break;
      case BPF_ALU | BPF_AND | BPF_K: r[i.dst_reg] = static_cast<uint32_t>(r[i.dst_reg] & static_cast<uint32_t>(i.imm)); break;
      case BPF_ALU | BPF_RSH | BPF_K: r[i.dst_reg] = static_cast<uint32_t>(r[i.dst_reg]) >> i.imm; break;
      case BPF_ALU | BPF_MOV | BPF_X: r[i.dst_reg] = static_cast<uint32_t>(r[i.src_reg]); break;
      case BPF_ALU64 | BPF_MOV | BPF_K: r[i.dst_reg] = static_cast<uint64_t>(static_cast<int64_t>(i.imm)); break;
      case BPF_JMP | BPF_JNE | BPF_K:
        if (r[i.dst_reg] != static_cast<uint64_t>(static_cast<uint32_t>(i.imm))) pc += i.off;
        break;
      case BPF_JMP | BPF_JNE | BPF_X:
        if (r[i.dst_reg] != r[i.src_reg]) pc += i.off;
        break;
      case BPF_JMP | BPF_EXIT: return static_cast<int>(r[0]);
      default: ADD_FAILURE() << "unexpected opcode " << int(i.code); return -1;
    }
  }
  ADD_FAILURE() << "program ran off its end";
  return -1;
}

oci::Spec DenyAll() {
  oci::Spec s;
  s.linux.emplace();
  s.linux->resources.emplace();
  s.linux->resources->devices.push_back(Rule(false, "", "rwm"));
  return s;
}

TEST(DeviceFilter, DenyAllLeavesOnlyTheDefaults) {
  auto rules = EffectiveDeviceRules(DenyAll());
  ASSERT_TRUE(rules.ok()) << rules.error().ToString();
  EXPECT_FALSE(AllowsAll(*rules));
  auto prog = BuildDeviceProgram(*rules);
  for (auto [maj, min] : {std::pair{1u, 3u}, {1u, 5u}, {1u, 7u}, {1u, 8u}, {1u, 9u}, {5u, 0u}, {5u, 2u}, {136u, 0u},
                          {136u, 77u}}) {
    EXPECT_EQ(Eval(prog, kC, kR | kW, maj, min), 1) << maj << ":" << min;
    EXPECT_EQ(Eval(prog, kC, kM, maj, min), 1) << maj << ":" << min;
    EXPECT_EQ(Eval(prog, kB, kR, maj, min), 0) << "block " << maj << ":" << min;
  }
  EXPECT_EQ(Eval(prog, kC, kW, 4, 64), 0);   // ttyS0: the guest console
  EXPECT_EQ(Eval(prog, kC, kM, 4, 64), 0);
  EXPECT_EQ(Eval(prog, kC, kR, 1, 1), 0);    // /dev/mem
  EXPECT_EQ(Eval(prog, kB, kR | kW, 254, 0), 0);  // a virtio disk
  EXPECT_EQ(Eval(prog, kC, kR, 10, 200), 0);  // /dev/net/tun
}

TEST(DeviceFilter, LaterRulesWinAndAccessIsASubsetTest) {
  oci::Spec s = DenyAll();
  auto& d = s.linux->resources->devices;
  d.push_back(Rule(true, "c", "rw", 10, 200));
  d.push_back(Rule(true, "b", "r", 254));
  d.push_back(Rule(false, "b", "rwm", 254, 3));
  auto rules = EffectiveDeviceRules(s);
  ASSERT_TRUE(rules.ok());
  auto prog = BuildDeviceProgram(*rules);
  EXPECT_EQ(Eval(prog, kC, kR, 10, 200), 1);
  EXPECT_EQ(Eval(prog, kC, kR | kW, 10, 200), 1);
  EXPECT_EQ(Eval(prog, kC, kM, 10, 200), 0);       // m not granted
  EXPECT_EQ(Eval(prog, kC, kR | kM, 10, 200), 0);  // part of it not granted
  EXPECT_EQ(Eval(prog, kB, kR, 10, 200), 0);       // type matters
  EXPECT_EQ(Eval(prog, kB, kR, 254, 0), 1);        // any minor
  EXPECT_EQ(Eval(prog, kB, kR, 254, 16), 1);
  EXPECT_EQ(Eval(prog, kB, kW, 254, 0), 0);
  EXPECT_EQ(Eval(prog, kB, kR, 254, 3), 0);        // the later deny wins
}

TEST(DeviceFilter, PrivilegedAllowsEverythingAndSpecDevicesAreAllowed) {
  oci::Spec s = DenyAll();
  s.linux->resources->devices.push_back(Rule(true, "a", "rwm"));
  auto rules = EffectiveDeviceRules(s);
  ASSERT_TRUE(rules.ok());
  EXPECT_TRUE(AllowsAll(*rules));
  auto prog = BuildDeviceProgram(*rules);
  EXPECT_EQ(Eval(prog, kC, kR | kW | kM, 4, 64), 1);
  EXPECT_EQ(Eval(prog, kB, kR | kW | kM, 8, 0), 1);

  oci::Spec dev = DenyAll();
  oci::Device fuse;
  fuse.path = "/dev/fuse";
  fuse.type = "c";
  fuse.major = 10;
  fuse.minor = 229;
  oci::Device fifo;
  fifo.path = "/dev/fifo";
  fifo.type = "p";
  dev.linux->devices = {fuse, fifo};
  rules = EffectiveDeviceRules(dev);
  ASSERT_TRUE(rules.ok());
  prog = BuildDeviceProgram(*rules);
  EXPECT_EQ(Eval(prog, kC, kR | kW | kM, 10, 229), 1);
  EXPECT_EQ(Eval(prog, kC, kR, 10, 228), 0);
}

TEST(DeviceFilter, BadRulesAreRefused) {
  for (auto bad : {Rule(true, "x", "r"),
                   Rule(true, "c", "rx"),
                   Rule(true, "c", "r", -7)}) {
    oci::Spec s = DenyAll();
    s.linux->resources->devices.push_back(bad);
    auto rules = EffectiveDeviceRules(s);
    ASSERT_FALSE(rules.ok());
    EXPECT_EQ(rules.error().code(), Code::kInvalidArgument);
    EXPECT_NE(rules.error().ToString().find("linux.resources.devices[1]"), std::string::npos)
        << rules.error().ToString();
  }
}

TEST(DeviceFilter, KernelAcceptsTheProgram) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  oci::Spec s = DenyAll();
  s.linux->resources->devices.push_back(Rule(true, "b", "r", 8));
  auto rules = EffectiveDeviceRules(s);
  ASSERT_TRUE(rules.ok());
  auto fd = LoadDeviceProgram(BuildDeviceProgram(*rules));
  if (!fd.ok() && fd.error().sys_errno() == EPERM) GTEST_SKIP() << "bpf() not permitted here";
  ASSERT_TRUE(fd.ok()) << fd.error().ToString();  // the verifier passed it
}

// Attaches the program to a cgroup of a private cgroup2 mount and checks
// that a process in it can use /dev/null but not mknod or open a device
// outside the defaults.
TEST(DeviceFilter, EnforcedInACgroup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  char tmpl[] = "/tmp/cask-devcg-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  // Made here, outside any device-restricted cgroup.
  ASSERT_EQ(mknod((dir + "/mem").c_str(), S_IFCHR | 0600, makedev(1, 1)), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // 0 pass, 77 skip, other: the failing step.
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(77);
    std::string mnt = dir + "/cg";
    mkdir(mnt.c_str(), 0700);
    if (mount("none", mnt.c_str(), "cgroup2", 0, nullptr) != 0) _exit(77);
    std::string cg = mnt + "/cask-devcg-" + std::to_string(getpid());
    if (mkdir(cg.c_str(), 0755) != 0) _exit(77);
    int rc = 0;
    pid_t child = -1;
    {
      auto rules = EffectiveDeviceRules(DenyAll());
      auto prog = rules.ok() ? ApplyDeviceRules(cg, *rules) : Result<UniqueFd>(rules.error());
      if (!prog.ok()) {
        rc = prog.error().sys_errno() == EPERM || prog.error().sys_errno() == EINVAL ? 77 : 10;
      } else {
        child = fork();
        if (child == 0) {
          if (!WriteFile(cg + "/cgroup.procs", "0").ok()) _exit(11);
          int fd = open("/dev/null", O_WRONLY);
          if (fd < 0 || write(fd, "x", 1) != 1) _exit(12);
          close(fd);
          std::string node = dir + "/ttyS0";
          if (mknod(node.c_str(), S_IFCHR | 0600, makedev(4, 64)) == 0) _exit(13);
          if (errno != EPERM) _exit(14);
          // A node made outside the cgroup cannot be opened inside it.
          fd = open((dir + "/mem").c_str(), O_RDONLY);
          if (fd >= 0) _exit(15);
          if (errno != EPERM) _exit(16);
          _exit(0);
        }
        int st = 0;
        waitpid(child, &st, 0);
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 20;
      }
    }
    rmdir(cg.c_str());
    umount2(mnt.c_str(), MNT_DETACH);
    rmdir(mnt.c_str());
    _exit(rc);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  unlink((dir + "/mem").c_str());
  unlink((dir + "/ttyS0").c_str());
  rmdir((dir + "/cg").c_str());
  rmdir(dir.c_str());
  ASSERT_TRUE(WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) GTEST_SKIP() << "no cgroup2 or cgroup BPF here";
  EXPECT_EQ(WEXITSTATUS(st), 0) << "failing step " << WEXITSTATUS(st);
}

}  // namespace
}  // namespace cask::container
