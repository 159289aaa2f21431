#include "base/json_string.h"

#include <gtest/gtest.h>

#include <string>

namespace hivemesh {
namespace {

std::string Json(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

TEST(JsonStringTest, PlainTextIsQuotedAsItIs) {
  EXPECT_EQ(Json(""), "\"\"");
  EXPECT_EQ(Json("resnet-50 v2"), "\"resnet-50 v2\"");
}

TEST(JsonStringTest, QuotesBackslashesAndControlCharactersAreEscaped) {
  EXPECT_EQ(Json("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(Json("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
  EXPECT_EQ(Json(std::string("\x01\x1f\0", 3)), "\"\\u0001\\u001f\\u0000\"");
}

TEST(JsonStringTest, ValidUtf8IsCopied) {
  EXPECT_EQ(Json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9d"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9d\"");
}

TEST(JsonStringTest, BytesThatAreNotUtf8BecomeTheirOwnCodePoints) {
  // A lone continuation byte, a truncated sequence, an overlong form, a surrogate: each byte is
  // kept as \u00XX, so a reader gets every byte back and the JSON stays valid.
  EXPECT_EQ(Json("\x80"), "\"\\u0080\"");
  EXPECT_EQ(Json("a\xc3"), "\"a\\u00c3\"");
  EXPECT_EQ(Json("\xc0\xaf"), "\"\\u00c0\\u00af\"");
  EXPECT_EQ(Json("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");
  EXPECT_EQ(Json("\xff ok"), "\"\\u00ff ok\"");
}

TEST(JsonStringTest, AppendsToWhatIsThere) {
  std::string out = "{\"k\":";
  AppendJsonString(out, "v");
  EXPECT_EQ(out, "{\"k\":\"v\"");
}

}  // namespace
}  // namespace hivemesh
