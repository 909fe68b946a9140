#include "lib/hypervisor/probe.h"

#include <gtest/gtest.h>

#include "lib/hypervisor/hypervisor.h"

namespace cask::hypervisor {
namespace {

constexpr const char* kAmdCpuinfo =
    "processor\t: 0\n"
    "vendor_id\t: AuthenticAMD\n"
    "cpu MHz\t\t: 2445.404\n"
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic svm sse sse2\n"
    "\n"
    "processor\t: 1\n"
    "cpu MHz\t\t: 1000.000\n";

TEST(Cpuinfo, VirtFlags) {
  EXPECT_TRUE(CpuinfoHasVirt(kAmdCpuinfo));
  EXPECT_TRUE(CpuinfoHasVirt("flags\t: fpu vmx sse\n"));
  EXPECT_TRUE(CpuinfoHasVirt("flags\t: fpu sse vmx"));  // last word, no newline
  EXPECT_FALSE(CpuinfoHasVirt("flags\t\t: fpu vme svm_lock vmxon sse\n"));  // words, not substrings
  EXPECT_FALSE(CpuinfoHasVirt("model name\t: svm vmx\n"));                 // only the flags line counts
  EXPECT_FALSE(CpuinfoHasVirt(""));
}

TEST(Cpuinfo, TscKhz) {
  EXPECT_EQ(CpuinfoTscKhz(kAmdCpuinfo), 2445404u);  // the first CPU
  EXPECT_EQ(CpuinfoTscKhz("cpu MHz : 3000\n"), 3000000u);
  EXPECT_EQ(CpuinfoTscKhz("cpu MHz\t: 2100.5\n"), 2100500u);
  EXPECT_EQ(CpuinfoTscKhz("cpu MHz\t: 2100.123456\n"), 2100123u);
  EXPECT_EQ(CpuinfoTscKhz("cpu MHz\t: fast\n"), 0u);
  EXPECT_EQ(CpuinfoTscKhz("cpu MHz\t: 12x\n"), 0u);
  EXPECT_EQ(CpuinfoTscKhz("processor : 0\n"), 0u);
}

TEST(Resolve, AccelAutoNeedsKvmAndVirtFlags) {
  HostProbe h;
  EXPECT_EQ(ResolveAccel(Accel::kAuto, h), Accel::kTcg);
  h.kvm_usable = true;
  EXPECT_EQ(ResolveAccel(Accel::kAuto, h), Accel::kTcg);
  h.cpu_has_virt = true;
  EXPECT_EQ(ResolveAccel(Accel::kAuto, h), Accel::kKvm);
  h.kvm_usable = false;
  EXPECT_EQ(ResolveAccel(Accel::kAuto, h), Accel::kTcg);
}

TEST(Resolve, AccelExplicitIsKept) {
  HostProbe none;
  HostProbe all{true, true, true, 1};
  EXPECT_EQ(ResolveAccel(Accel::kKvm, none), Accel::kKvm);
  EXPECT_EQ(ResolveAccel(Accel::kTcg, all), Accel::kTcg);
}

TEST(Resolve, Channel) {
  HostProbe h;
  EXPECT_EQ(ResolveChannel(ChannelRequest::kAuto, h), Channel::kSerial);
  EXPECT_EQ(ResolveChannel(ChannelRequest::kVsock, h), Channel::kVsock);
  h.vhost_vsock = true;
  EXPECT_EQ(ResolveChannel(ChannelRequest::kAuto, h), Channel::kVsock);
  EXPECT_EQ(ResolveChannel(ChannelRequest::kSerial, h), Channel::kSerial);
  EXPECT_EQ(ChannelWord(Channel::kSerial), "serial");
  EXPECT_EQ(ChannelWord(Channel::kVsock), "vsock");
}

TEST(Resolve, ThisHost) {
  // The real probes agree with the devices present.
  HostProbe h = ProbeHost();
  EXPECT_EQ(h.vhost_vsock, ::access("/dev/vhost-vsock", F_OK) == 0);
  EXPECT_EQ(ResolveChannel(ChannelRequest::kAuto),
            h.vhost_vsock ? Channel::kVsock : Channel::kSerial);
  EXPECT_EQ(ResolveAccel(Accel::kAuto), ResolveAccel(Accel::kAuto, h));
}

}  // namespace
}  // namespace cask::hypervisor
