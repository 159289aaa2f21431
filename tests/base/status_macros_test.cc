#include "base/status_macros.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace hivemesh {
namespace {

absl::StatusOr<int> Half(int n) {
  if (n % 2 != 0) return absl::InvalidArgumentError("odd");
  return n / 2;
}

absl::StatusOr<int> Quarter(int n) {
  HM_ASSIGN_OR_RETURN(int half, Half(n));
  HM_ASSIGN_OR_RETURN(half, Half(half));  // into an existing variable
  return half;
}

absl::Status CheckEven(int n) {
  HM_RETURN_IF_ERROR(Half(n).status());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<std::string>> Owned(bool ok) {
  if (!ok) return absl::NotFoundError("none");
  return std::make_unique<std::string>("moved");
}

absl::StatusOr<std::string> TakeOwned(bool ok) {
  HM_ASSIGN_OR_RETURN(std::unique_ptr<std::string> s, Owned(ok));  // move-only values
  return *s;
}

TEST(StatusMacrosTest, AssignOrReturnPassesValuesAndErrorsOn) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);  // 3 is odd
  EXPECT_EQ(Quarter(5).status().message(), "odd");
  EXPECT_EQ(*TakeOwned(true), "moved");
  EXPECT_EQ(TakeOwned(false).status().code(), absl::StatusCode::kNotFound);
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsOnlyErrors) {
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(3).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hivemesh
