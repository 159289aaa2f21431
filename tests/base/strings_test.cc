#include "base/strings.h"

#include <gtest/gtest.h>

namespace hivemesh {
namespace {

TEST(ParseUintTest, TakesOnlyWholeDecimalNumbersThatFit) {
  EXPECT_EQ(ParseUint("0"), 0u);
  EXPECT_EQ(ParseUint("1234"), 1234u);
  EXPECT_EQ(ParseUint("18446744073709551615"), UINT64_MAX);
  for (const char* bad : {"", "18446744073709551616", "-1", "+1", " 1", "1 ", "12a", "0x10"}) {
    EXPECT_EQ(ParseUint(bad), std::nullopt) << "'" << bad << "'";
  }
}

}  // namespace
}  // namespace hivemesh
