#include "codec/status_codes.h"

#include <array>
#include <utility>

namespace hivemesh {
namespace {

// The one table. For each HTTP status, its first code is the one an HTTP answer reads back as.
constexpr std::array<std::pair<absl::StatusCode, int>, 11> kTable = {{
    {absl::StatusCode::kOk, 200},
    {absl::StatusCode::kInvalidArgument, 400},
    {absl::StatusCode::kFailedPrecondition, 400},
    {absl::StatusCode::kOutOfRange, 400},
    {absl::StatusCode::kPermissionDenied, 403},
    {absl::StatusCode::kNotFound, 404},
    {absl::StatusCode::kUnavailable, 503},
    {absl::StatusCode::kResourceExhausted, 503},
    {absl::StatusCode::kDeadlineExceeded, 504},
    {absl::StatusCode::kUnimplemented, 501},
    {absl::StatusCode::kCancelled, 499},  // the client went away, or the sender cancelled it
}};

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  for (const auto& [c, http] : kTable) {
    if (c == code) return http;
  }
  return 500;
}

absl::StatusCode StatusCodeForHttp(int http_status) {
  for (const auto& [c, http] : kTable) {
    if (http == http_status && c != absl::StatusCode::kOk) return c;
  }
  return absl::StatusCode::kInternal;
}

}  // namespace hivemesh
