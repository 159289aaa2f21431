#include "codec/status_codes.h"

#include <gtest/gtest.h>

namespace hivemesh {
namespace {

TEST(StatusCodesTest, EachCodeHasItsHttpStatus) {
  EXPECT_EQ(HttpStatusFor(absl::OkStatus()), 200);
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::FailedPreconditionError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::OutOfRangeError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::PermissionDeniedError("x")), 403);
  EXPECT_EQ(HttpStatusFor(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("x")), 503);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusFor(absl::DeadlineExceededError("x")), 504);
  EXPECT_EQ(HttpStatusFor(absl::UnimplementedError("x")), 501);
  EXPECT_EQ(HttpStatusFor(absl::InternalError("x")), 500);
  EXPECT_EQ(HttpStatusFor(absl::UnknownError("x")), 500);
  EXPECT_EQ(HttpStatusFor(absl::AbortedError("x")), 500);
}

TEST(StatusCodesTest, AnHttpStatusReadsBackAsACodeThatMapsToIt) {
  // Whatever code a node answered with, the peer that reads its HTTP status gets a code that
  // maps to the same HTTP status: an answer relayed through the mesh keeps its status.
  for (int c = 1; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    const int http = HttpStatusFor(code);
    EXPECT_EQ(HttpStatusFor(StatusCodeForHttp(http)), http) << absl::StatusCodeToString(code);
  }
  EXPECT_EQ(StatusCodeForHttp(400), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusCodeForHttp(503), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusCodeForHttp(404), absl::StatusCode::kNotFound);
  EXPECT_EQ(StatusCodeForHttp(403), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(StatusCodeForHttp(504), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(StatusCodeForHttp(418), absl::StatusCode::kInternal);
  EXPECT_EQ(StatusCodeForHttp(500), absl::StatusCode::kInternal);
  EXPECT_EQ(StatusCodeForHttp(200), absl::StatusCode::kInternal);  // never an OK error
}

}  // namespace
}  // namespace hivemesh
