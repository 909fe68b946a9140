#include "lib/oci/id.h"

#include <gtest/gtest.h>

#include <string>

namespace cask::oci {
namespace {

TEST(Id, Accepts) {
  for (std::string id : {std::string("a"), std::string("pod-1"), std::string("c_2.log"), std::string("0"), std::string(64, 'f'), std::string("A9-._z")}) {
    EXPECT_TRUE(ValidateId("container id", id).ok()) << id;
  }
}

TEST(Id, Refuses) {
  for (std::string id : {std::string(""), std::string(65, 'a'), std::string("."), std::string(".."),
                         std::string(".hidden"), std::string("-x"), std::string("_x"), std::string("a/b"),
                         std::string("a b"), std::string("a\nb"), std::string("a\0b", 3), std::string("\xc3\xa9"),
                         std::string("a:b")}) {
    auto st = ValidateId("container id", id);
    ASSERT_FALSE(st.ok()) << id;
    EXPECT_EQ(st.error().code(), Code::kInvalidArgument);
    EXPECT_NE(st.error().ToString().find("container id"), std::string::npos);
  }
}

TEST(Id, MessageIsBoundedAndPrintable) {
  std::string huge(100000, '\n');
  auto st = ValidateId("exec id", huge);
  ASSERT_FALSE(st.ok());
  std::string msg = st.error().ToString();
  EXPECT_LT(msg.size(), 512u);
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace cask::oci
