// The model and version name rule (codec/model_name.h).
#include "codec/model_name.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace hivemesh {
namespace {

using ::testing::HasSubstr;

TEST(ModelNameTest, AcceptsWhatModelFoldersAreCalled) {
  for (std::string_view name : {"identity", "vibration-anomaly", "face_detector", "vib.v2", "A1",
                                "_private", "9lives", "a..b", "x-"}) {
    EXPECT_TRUE(IsValidModelName(name)) << name;
    EXPECT_TRUE(CheckModelName(name).ok()) << name;
  }
  EXPECT_TRUE(IsValidModelName(std::string(kMaxModelNameLength, 'm')));
}

TEST(ModelNameTest, RefusesPathsDotsControlBytesAndEncodings) {
  for (std::string_view name :
       {"", ".", "..", ".hidden", "-rf", "a/b", "../x", "/etc", "a\\b", "%2e%2e", "a%00b", "a b",
        "a\tb", "a\nb", "caf\xc3\xa9", "a:b", "a?b", "a#b", "~root"}) {
    EXPECT_FALSE(IsValidModelName(name)) << name;
    const absl::Status s = CheckModelName(name);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(kModelNameRule)));
  }
  EXPECT_FALSE(IsValidModelName(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidModelName(std::string(kMaxModelNameLength + 1, 'm')));
}

TEST(ModelNameTest, MessagesShowANameBoundedAndEscaped) {
  const absl::Status s = CheckModelName(std::string(60000, 'a'));
  EXPECT_LT(s.message().size(), 400u);
  EXPECT_THAT(std::string(s.message()), HasSubstr("... (60000 bytes)"));
  EXPECT_EQ(PrintableName(std::string("a\0b\n'", 5)), "a\\x00b\\x0a\\x27");
  EXPECT_EQ(PrintableName("identity"), "identity");
}

TEST(ModelNameTest, VersionsArePositiveIntegersWithoutLeadingZeros) {
  int64_t v = 0;
  EXPECT_TRUE(ParseVersion("1", &v));
  EXPECT_EQ(v, 1);
  EXPECT_TRUE(ParseVersion("9223372036854775807", &v));
  EXPECT_EQ(v, INT64_MAX);
  for (std::string_view bad : {"", "0", "01", "-1", "+1", "1.0", "1 ", " 1", "1a", "x",
                               "9223372036854775808", "..", "1/2"}) {
    EXPECT_FALSE(ParseVersion(bad, &v)) << bad;
    EXPECT_FALSE(IsValidVersionName(bad)) << bad;
    EXPECT_THAT(std::string(CheckVersionName(bad).message()),
                HasSubstr(std::string(kVersionNameRule)));
  }
}

}  // namespace
}  // namespace hivemesh
