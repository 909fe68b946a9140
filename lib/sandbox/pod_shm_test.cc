#include "lib/sandbox/pod_shm.h"

#include <gtest/gtest.h>

namespace cask::sandbox {
namespace {

oci::Mount M(std::string dst, std::string type, std::string src, std::vector<std::string> opts) {
  return oci::Mount{std::move(dst), std::move(type), std::move(src), std::move(opts)};
}

TEST(PodShmTest, CriSandboxSpecGetsThePodTmpfs) {
  // The pause spec: containerd's default tmpfs, then CRI's read-only bind.
  oci::Spec spec;
  spec.mounts = {M("/proc", "proc", "proc", {}),
                 M("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
                 M("/dev/shm", "bind", "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/s1/shm", {"rbind", "ro"}),
                 M("/etc/resolv.conf", "bind", "/var/lib/x/resolv.conf", {"rbind", "ro"})};
  EXPECT_EQ(PodShmBytes(spec), 65536ull << 10);
  oci::Spec out = UsePodShm(spec);
  ASSERT_EQ(out.mounts.size(), 3u);
  EXPECT_EQ(out.mounts[0].destination, "/proc");
  EXPECT_EQ(out.mounts[1].destination, "/dev/shm");
  EXPECT_EQ(out.mounts[1].source, kGuestPodShmDir);
  EXPECT_EQ(out.mounts[1].type, "bind");
  EXPECT_EQ(out.mounts[1].options.back(), "ro");
  EXPECT_TRUE(IsPodShmBind(out.mounts[1]));
  EXPECT_FALSE(IsPodShmBind(spec.mounts[2]));
  EXPECT_EQ(out.mounts[2].destination, "/etc/resolv.conf");
}

TEST(PodShmTest, AppContainerBindBecomesAWritableBindOfThePodTmpfs) {
  oci::Spec spec;
  spec.mounts = {M("/dev/shm/", "bind", "/run/containerd/x/shm", {"rbind", "rprivate", "rw"})};
  oci::Spec out = UsePodShm(spec);
  ASSERT_EQ(out.mounts.size(), 1u);
  EXPECT_EQ(out.mounts[0].source, kGuestPodShmDir);
  EXPECT_EQ(out.mounts[0].options.back(), "rw");
}

TEST(PodShmTest, AContainerWithItsOwnTmpfsKeepsIt) {
  oci::Spec spec;
  spec.mounts = {M("/dev/shm", "tmpfs", "shm", {"size=1m"})};
  EXPECT_EQ(UsePodShm(spec).mounts, spec.mounts);
  EXPECT_EQ(PodShmBytes(spec), 1ull << 20);
}

TEST(PodShmTest, SizeIsBoundedAndDefaulted) {
  oci::Spec spec;
  EXPECT_EQ(PodShmBytes(spec), kDefaultPodShmBytes);
  spec.mounts = {M("/dev/shm", "tmpfs", "shm", {"size=lots"})};
  EXPECT_EQ(PodShmBytes(spec), kDefaultPodShmBytes);
  spec.mounts = {M("/dev/shm", "tmpfs", "shm", {"size=99999999g"})};
  EXPECT_EQ(PodShmBytes(spec), kMaxPodShmBytes);
  spec.mounts = {M("/dev/shm", "tmpfs", "shm", {"size=1"})};
  EXPECT_EQ(PodShmBytes(spec), 1ull << 20);
  GuestMount gm = PodShmMount(1ull << 20);
  EXPECT_EQ(gm.target, kGuestPodShmDir);
  EXPECT_EQ(gm.fstype, "tmpfs");
  EXPECT_EQ(gm.options.back(), "size=1048576");
}

}  // namespace
}  // namespace cask::sandbox
