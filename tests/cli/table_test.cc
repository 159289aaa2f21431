#include "cli/table.h"

#include <gtest/gtest.h>

namespace hivemesh::cli {
namespace {

TEST(FormatTableTest, AlignsColumnsTwoSpacesApartWithoutTrailingSpaces) {
  EXPECT_EQ(
      FormatTable({{"NAME", "STATE", "N"}, {"node-a", "alive", "12"}, {"b", "suspect", "3"}}, {2}),
      "NAME    STATE     N\n"
      "node-a  alive    12\n"
      "b       suspect   3\n");
}

TEST(FormatTableTest, ShortRowsArePaddedAndEmptyInputIsEmpty) {
  EXPECT_EQ(FormatTable({{"A", "B"}, {"x"}}), "A  B\nx\n");
  EXPECT_EQ(FormatTable({}), "");
}

TEST(AbbreviateTest, CutsWithAnEllipsisOnlyWhenTooLong) {
  EXPECT_EQ(Abbreviate("hello", 5), "hello");
  EXPECT_EQ(Abbreviate("hello world", 8), "hello...");
  EXPECT_EQ(Abbreviate("hello world", 8).size(), 8u);
}

TEST(JoinAbbreviatedTest, KeepsTheFirstAndLastAndCounts) {
  EXPECT_EQ(JoinAbbreviated({"1", "2", "3"}, 3), "1, 2, 3");
  EXPECT_EQ(JoinAbbreviated({"1", "2", "3", "4", "5", "6"}, 3), "1, 2, ..., 6 (6 values)");
  EXPECT_EQ(JoinAbbreviated({}, 3), "");
}

TEST(FormatMicrosTest, PicksAUnit) {
  EXPECT_EQ(FormatMicros(850), "850 us");
  EXPECT_EQ(FormatMicros(1234), "1.23 ms");
  EXPECT_EQ(FormatMicros(40512), "40.5 ms");
  EXPECT_EQ(FormatMicros(2.5e6), "2.50 s");
}

TEST(FormatRateTest, AtMostOneDecimalAndDashWhenUnknown) {
  EXPECT_EQ(FormatRate(std::nullopt), "-");
  EXPECT_EQ(FormatRate(0.0), "0");
  EXPECT_EQ(FormatRate(2.5), "2.5");
  EXPECT_EQ(FormatRate(9.98), "10");
  EXPECT_EQ(FormatRate(1234.4), "1234");
}

}  // namespace
}  // namespace hivemesh::cli
