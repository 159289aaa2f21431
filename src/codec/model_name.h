// What a model name and a version name are: one rule, checked wherever a name enters the node
// (the repository folder's scan, the `models` setting, the repository API over REST and gRPC,
// the REST paths of /v2/models/..., inference lookups). A name that breaks the rule is never
// looked up on disk, never indexed and never gossiped.
//
//   model name    1 to 128 characters from A-Z a-z 0-9 '.' '_' '-', starting with a letter, a
//                 digit or '_'. So never "", "." or "..", never a path ('/'), never a NUL, a
//                 space or a '%': the REST router does not percent-decode paths, and since '%'
//                 is not allowed, no encoded spelling ("%2e%2e") names any model.
//   version name  a positive integer in decimal without leading zeros that fits 63 bits, as
//                 the version folders <repo>/<model>/<version>/ are named.
//
// Pure functions, no allocation on the valid path; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace hivemesh {

inline constexpr size_t kMaxModelNameLength = 128;
// The rule, as client errors and logs state it.
inline constexpr std::string_view kModelNameRule =
    "a model name is 1 to 128 characters from A-Z a-z 0-9 . _ - and starts with a letter, a "
    "digit or _";
inline constexpr std::string_view kVersionNameRule =
    "a version is a positive integer without leading zeros (e.g. 1, 2, 10)";

bool IsValidModelName(std::string_view name);
// OK, or INVALID_ARGUMENT: "model name '<name>' is not valid: <rule>" (the name shown bounded
// and escaped, see PrintableName).
absl::Status CheckModelName(std::string_view name);

// True, with `*out` set, if `s` names a version (the version rule above).
bool ParseVersion(std::string_view s, int64_t* out);
bool IsValidVersionName(std::string_view s);
// OK, or INVALID_ARGUMENT naming the version rule.
absl::Status CheckVersionName(std::string_view version);

// `s` for a message or a log line: at most 40 of its bytes, with bytes outside printable ASCII
// (and '\'' and '\\') written as \xNN, and "... (N bytes)" if it was longer. A client's 60 KB
// name costs an answer of a few dozen bytes, and a log line cannot be split by a newline in it.
std::string PrintableName(std::string_view s);

}  // namespace hivemesh
