// QemuHypervisor::Start without QEMU: validation errors and the unwinding of
// failed starts, using stand-in scripts for qemu and virtiofsd.
#include "lib/hypervisor/qemu.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "lib/base/fs.h"

namespace cask::hypervisor {
namespace {

using ::testing::HasSubstr;

class QemuStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cask-hv-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    ASSERT_TRUE(WriteFile(tmp_ + "/vmlinux", "kernel").ok());
    ASSERT_TRUE(WriteFile(tmp_ + "/initrd.img", "initrd").ok());
    ASSERT_TRUE(MkdirAll(tmp_ + "/shared").ok());
    host_.tsc_khz = 2445404;
    cfg_.id = "sb1";
    cfg_.state_dir = tmp_ + "/state/sb1";
    cfg_.qemu_path = Script("qemu", "exit 0");
    cfg_.kernel = tmp_ + "/vmlinux";
    cfg_.initrd = tmp_ + "/initrd.img";
    cfg_.virtiofsd_path = Script("virtiofsd", "exit 0");
  }
  void TearDown() override { (void)RemoveAll(tmp_); }

  // An executable /bin/sh script in the temp dir.
  std::string Script(const std::string& name, const std::string& body) {
    std::string p = tmp_ + "/" + name;
    EXPECT_TRUE(WriteFile(p, "#!/bin/sh\n" + body + "\n", 0755).ok());
    return p;
  }

  Result<std::unique_ptr<Vm>> Start() { return NewQemuWithHost(host_)->Start(cfg_); }

  void ExpectNothingLeft() {
    EXPECT_FALSE(PathExists(cfg_.state_dir)) << cfg_.state_dir << " was left behind";
  }

  std::string tmp_;
  HostProbe host_;
  VmSettings cfg_;
};

TEST_F(QemuStartTest, MissingKernelIsNotFoundNamingPathAndKey) {
  cfg_.kernel = tmp_ + "/no-such-vmlinux";
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_THAT(r.error().ToString(), HasSubstr("hypervisor.kernel"));
  EXPECT_THAT(r.error().ToString(), HasSubstr(tmp_ + "/no-such-vmlinux"));
  ExpectNothingLeft();
  EXPECT_FALSE(PathExists(tmp_ + "/state"));
}

TEST_F(QemuStartTest, MissingBinariesAreNotFound) {
  struct Case {
    std::string VmSettings::*field;
    const char* key;
  };
  for (auto c : {Case{&VmSettings::qemu_path, "hypervisor.path"},
                 Case{&VmSettings::initrd, "hypervisor.initrd"},
                 Case{&VmSettings::virtiofsd_path, "hypervisor.virtiofsd_path"}}) {
    VmSettings saved = cfg_;
    cfg_.shared_dir = tmp_ + "/shared";
    cfg_.*c.field = tmp_ + "/missing";
    auto r = Start();
    ASSERT_FALSE(r.ok()) << c.key;
    EXPECT_EQ(r.error().code(), Code::kNotFound) << c.key;
    EXPECT_THAT(r.error().ToString(), HasSubstr(c.key));
    EXPECT_THAT(r.error().ToString(), HasSubstr(tmp_ + "/missing"));
    ExpectNothingLeft();
    cfg_ = saved;
  }
}

TEST_F(QemuStartTest, VirtiofsdIsOnlyRequiredWithASharedDir) {
  cfg_.virtiofsd_path = tmp_ + "/missing";
  cfg_.qemu_path = Script("qemu", "echo 'qemu-system-x86_64: fake failure' >&2; exit 1");
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().ToString(), ::testing::Not(HasSubstr("virtiofsd")));
}

TEST_F(QemuStartTest, BadValuesAreInvalidArgumentNamingTheKey) {
  cfg_.machine_type = "virt";
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().ToString(), HasSubstr("hypervisor.machine_type"));
  cfg_.machine_type = "q35";

  cfg_.memory_mib = 12;
  r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().ToString(), HasSubstr("hypervisor.memory_mib"));
  cfg_.memory_mib = 256;

  cfg_.shared_dir = tmp_ + "/shared";
  cfg_.virtiofs_cache = "sometimes";
  r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.error().ToString(), HasSubstr("hypervisor.virtiofs_cache"));

  cfg_.virtiofs_cache = "auto";
  cfg_.shared_dir = tmp_ + "/no-such-shared";
  r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_THAT(r.error().ToString(), HasSubstr("no-such-shared"));

  cfg_.shared_dir = "relative/dir";
  r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  cfg_.shared_dir = "";
  cfg_.state_dir = "relative";
  r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);

  cfg_.state_dir = "/" + std::string(120, 'x');
  r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().ToString(), HasSubstr("too long"));
}

TEST_F(QemuStartTest, KvmAndVsockRequireTheDevices) {
  cfg_.accel = Accel::kKvm;
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.error().ToString(), HasSubstr("/dev/kvm"));

  cfg_.accel = Accel::kAuto;
  cfg_.channel = ChannelRequest::kVsock;
  r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.error().ToString(), HasSubstr("/dev/vhost-vsock"));
  ExpectNothingLeft();
}

TEST_F(QemuStartTest, MicrovmUnderTcgNeedsTheTscFrequency) {
  host_.tsc_khz = 0;
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.error().ToString(), HasSubstr("tsc_early_khz"));
}

TEST_F(QemuStartTest, QemuFailureCarriesItsStderrAndUnwinds) {
  // The fake qemu records its argv, then fails like QEMU on a bad option.
  cfg_.qemu_path = Script("qemu", "printf '%s\\n' \"$@\" > " + tmp_ +
                                    "/argv; echo 'qemu-system-x86_64: -device foo: bad device' >&2; exit 1");
  cfg_.shared_dir = tmp_ + "/shared";
  // The fake virtiofsd listens on its socket path and waits.
  cfg_.virtiofsd_path =
      Script("virtiofsd", "sock=${1#--socket-path=}; exec socat UNIX-LISTEN:\"$sock\" /dev/null");
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().ToString(), HasSubstr("bad device"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("qemu exited during startup (status 1)"));
  ExpectNothingLeft();
  // The argv QEMU got: the kernel params and the virtio-fs socket.
  auto argv = ReadFile(tmp_ + "/argv");
  ASSERT_TRUE(argv.ok());
  EXPECT_THAT(*argv, HasSubstr("tsc_early_khz=2445404"));
  EXPECT_THAT(*argv, HasSubstr("cask.channel=serial"));
  EXPECT_THAT(*argv, HasSubstr("vhost-user-fs-device,chardev=virtiofs,tag=cask"));
  EXPECT_THAT(*argv, HasSubstr("quiet"));
}

TEST_F(QemuStartTest, VirtiofsdFailureCarriesItsLog) {
  cfg_.shared_dir = tmp_ + "/shared";
  cfg_.virtiofsd_path = Script("virtiofsd", "echo 'fake virtiofsd: cannot do it' >&2; exit 3");
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().ToString(), HasSubstr("cannot do it"));
  EXPECT_THAT(r.error().ToString(), HasSubstr("status 3"));
  ExpectNothingLeft();
}

TEST_F(QemuStartTest, ConsoleFloodIsDrainedIntoABoundedTail) {
  // A stand-in QEMU that answers QMP and floods its console fd (fd 4, the
  // socket pair): 32 MiB, then a marker. The writer must get through (the
  // host keeps draining), and the host keeps a bounded tail only.
  std::string py = tmp_ + "/fakeqemu.py";
  ASSERT_TRUE(WriteFile(py, R"PY(
import os, socket, sys, threading
args = sys.argv[1:]
qmp = [a for a in args if a.startswith("socket,id=qmp,path=")][0].split("path=")[1].split(",server")[0]
con = [a for a in args if a.startswith("socket,id=console,fd=")][0].split("fd=")[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(qmp); s.listen(1)
def serve():
    c, _ = s.accept()
    f = c.makefile("rwb", buffering=0)
    f.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
    for line in f:
        if b"quit" in line:
            f.write(b'{"return": {}}\r\n'); os._exit(0)
        f.write(b'{"return": {}}\r\n')
threading.Thread(target=serve, daemon=True).start()
out = os.fdopen(int(con), "wb", buffering=0)
chunk = (b"x" * 199 + b"\n") * 512
for _ in range(32 * 1024 * 1024 // len(chunk)):
    out.write(chunk)
out.write(b"CONSOLE-FLOOD-DONE\n")
threading.Event().wait()
)PY").ok());
  cfg_.qemu_path = Script("qemu", "exec python3 " + py + " \"$@\"");
  auto r = Start();
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  auto& vm = *r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (vm->ConsoleTail(4096).find("CONSOLE-FLOOD-DONE") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_THAT(vm->ConsoleTail(4096), HasSubstr("CONSOLE-FLOOD-DONE")) << "the writer was blocked";
  struct stat st;
  ASSERT_EQ(::stat(vm->console_log_path().c_str(), &st), 0);
  EXPECT_LE(st.st_size, 512 * 1024);
  auto file = ReadFile(vm->console_log_path());
  ASSERT_TRUE(file.ok());
  EXPECT_THAT(file->substr(file->size() > 100 ? file->size() - 100 : 0), HasSubstr("CONSOLE-FLOOD-DONE"));
  EXPECT_LE(vm->ConsoleTail(100 << 20).size(), 256u * 1024);
  EXPECT_TRUE(vm->Stop(std::chrono::milliseconds(5000)).ok());
  EXPECT_EQ(vm->ConsoleTail(100), "");
  ExpectNothingLeft();
}

TEST_F(QemuStartTest, PreexistingStateDirIsKeptWithItsOtherContent) {
  ASSERT_TRUE(MkdirAll(cfg_.state_dir + "/shared").ok());
  cfg_.qemu_path = Script("qemu", "exit 1");
  auto r = Start();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(PathExists(cfg_.state_dir + "/shared"));
  EXPECT_FALSE(PathExists(cfg_.state_dir + "/qemu.log"));
  EXPECT_FALSE(PathExists(cfg_.state_dir + "/console.log"));
}

}  // namespace
}  // namespace cask::hypervisor
