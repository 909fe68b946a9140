#include "lib/shim/address.h"

#include <gtest/gtest.h>

#include <string>

#include "lib/shim/sha256.h"

namespace cask::shim {
namespace {

// FIPS 180-2 appendix B test vectors.
TEST(Sha256, NistVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Lengths around the padding boundary (55 bytes fit one block, 56 need two).
TEST(Sha256, PaddingBoundaries) {
  EXPECT_EQ(Sha256Hex(std::string(55, 'a')), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(Sha256Hex(std::string(56, 'a')), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(Sha256Hex(std::string(64, 'a')), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Address, ContainerdConvention) {
  // sha256("/run/containerd/containerd.sock/default/busybox")
  EXPECT_EQ(SocketAddress("/run/containerd/containerd.sock", "default", "busybox"),
            "unix:///run/containerd/s/3646bf529360b2d2555bc0d946ef2fb07e38596749e16cccbd778773b61a6f3c");
  // filepath.Join cleans: a trailing slash or "//" does not change the name.
  EXPECT_EQ(SocketAddress("/run/containerd/containerd.sock/", "default", "busybox"),
            SocketAddress("/run/containerd//containerd.sock", "default", "busybox"));
  // CRI-O passes an empty address.
  EXPECT_EQ(SocketAddress("", "default", "x"), "unix:///run/containerd/s/" + Sha256Hex("default/x"));
}

TEST(Address, CleanPath) {
  EXPECT_EQ(CleanPath("/a//b/./c/../d/"), "/a/b/d");
  EXPECT_EQ(CleanPath("/../a"), "/a");
  EXPECT_EQ(CleanPath("a/../../b"), "../b");
  EXPECT_EQ(CleanPath(""), ".");
  EXPECT_EQ(CleanPath("/"), "/");
  EXPECT_EQ(JoinClean({"", "default", "x"}), "default/x");
}

TEST(Address, SocketPath) {
  auto p = SocketPath("unix:///run/containerd/s/abc");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "/run/containerd/s/abc");
  EXPECT_FALSE(SocketPath("/run/containerd/s/abc").ok());  // abstract for containerd
  EXPECT_FALSE(SocketPath("unix://relative").ok());
  EXPECT_FALSE(SocketPath("unix:///" + std::string(200, 'x')).ok());
  auto full = SocketAddress("/run/containerd/containerd.sock", "k8s.io", "pod");
  auto fp = SocketPath(full);
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(fp->size(), 82u);
}

}  // namespace
}  // namespace cask::shim
