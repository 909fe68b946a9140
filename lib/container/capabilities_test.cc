#include "lib/container/capabilities.h"

#include <gtest/gtest.h>

namespace cask::container {
namespace {

TEST(CapabilitiesTest, NamesMapToKernelNumbers) {
  EXPECT_EQ(CapabilityFromName("CAP_CHOWN"), 0);
  EXPECT_EQ(CapabilityFromName("CAP_NET_BIND_SERVICE"), 10);
  EXPECT_EQ(CapabilityFromName("CAP_SYS_ADMIN"), 21);
  EXPECT_EQ(CapabilityFromName("CAP_AUDIT_WRITE"), 29);
  EXPECT_EQ(CapabilityFromName("CAP_CHECKPOINT_RESTORE"), 40);
  EXPECT_EQ(CapabilityFromName("cap_chown"), std::nullopt);  // case-sensitive, as runc
  EXPECT_EQ(CapabilityFromName("CAP_NOPE"), std::nullopt);
  EXPECT_EQ(CapabilityName(21), "CAP_SYS_ADMIN");
  EXPECT_EQ(CapabilityName(99), "");
}

TEST(CapabilitiesTest, ResolveBuildsMasks) {
  oci::Capabilities caps;
  caps.bounding = {"CAP_CHOWN", "CAP_KILL", "CAP_CHECKPOINT_RESTORE"};
  caps.effective = {"CAP_KILL"};
  auto sets = ResolveCapabilities(caps, 40);
  ASSERT_TRUE(sets.ok()) << sets.error().ToString();
  EXPECT_EQ(sets->bounding, (1ull << 0) | (1ull << 5) | (1ull << 40));
  EXPECT_EQ(sets->effective, 1ull << 5);
  EXPECT_EQ(sets->ambient, 0u);
  // Capabilities the running kernel does not know are dropped silently.
  auto old_kernel = ResolveCapabilities(caps, 37);
  ASSERT_TRUE(old_kernel.ok());
  EXPECT_EQ(old_kernel->bounding, (1ull << 0) | (1ull << 5));
}

TEST(CapabilitiesTest, UnknownNameIsInvalidArgument) {
  oci::Capabilities caps;
  caps.permitted = {"CAP_CHOWN", "CAP_FLY"};
  auto sets = ResolveCapabilities(caps, 40);
  ASSERT_FALSE(sets.ok());
  EXPECT_EQ(sets.error().code(), Code::kInvalidArgument);
  EXPECT_NE(sets.error().ToString().find("CAP_FLY"), std::string::npos);
  EXPECT_NE(sets.error().ToString().find("permitted"), std::string::npos);
}

TEST(CapabilitiesTest, LastCapabilityIsPlausible) {
  int last = LastCapability();
  EXPECT_GE(last, 36);
  EXPECT_LT(last, 64);
}

}  // namespace
}  // namespace cask::container
