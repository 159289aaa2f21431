#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/issuer_command.h"

namespace hivemesh::cli {
namespace {

TEST(TokenListTest, ShowsRemainingTimeUsesAndState) {
  constexpr const char* kList = R"({"tokens":[
    {"id":"b4b48960","role":"node","created":1000,"expires":8200,"uses":3,"used":1,
     "revoked":false,"created_by":"gw-1"},
    {"id":"0011aabb","role":"operator","created":1000,"expires":1000000,"uses":0,"used":7,
     "revoked":true,"created_by":"gw-2"},
    {"id":"ffff0000","role":"node","created":1000,"expires":1100,"uses":2,"used":2,
     "revoked":false,"created_by":"gw-1"}]})";
  absl::StatusOr<std::string> table = FormatTokenList(kList, 1000);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(*table,
            "ID        ROLE      EXPIRES IN  USED  STATE    CREATED BY\n"
            "b4b48960  node      2h0m         1/3  valid    gw-1\n"
            "0011aabb  operator  11d13h         7  revoked  gw-2\n"
            "ffff0000  node      1m40s        2/2  used up  gw-1\n");
  EXPECT_FALSE(FormatTokenList(R"({"tokens":[{"id":"x"}]})", 0).ok());
  EXPECT_FALSE(FormatTokenList("[]", 0).ok());
}

}  // namespace
}  // namespace hivemesh::cli
