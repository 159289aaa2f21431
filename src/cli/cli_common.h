// What every `hivemesh` client command shares: exit codes, how a status maps to one, reading the
// node's answers (a non-2xx answer becomes an error carrying the node's own message), reading
// input files, and the flags every command takes (--node, --output, --timeout-ms).
//
// Error codes inside the CLI and the exit code each gives:
//   INVALID_ARGUMENT                   2  usage: bad flags, unreadable file, bad data
//   UNAVAILABLE, DEADLINE_EXCEEDED     3  the node could not be reached or did not answer in time
//   anything else (UNKNOWN, INTERNAL)  1  the node answered with an error, or with something this
//                                         tool cannot read
// So code here never reports a node's answer as INVALID_ARGUMENT (NodeAnswered uses UNKNOWN).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cli/http_client.h"

namespace hivemesh::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitNodeError = 1,
  kExitUsage = 2,
  kExitUnreachable = 3,
};

// The exit codes as --help footers list them, one per line.
inline constexpr const char* kExitCodesHelp =
    "  0  success\n"
    "  1  the node answered with an error (printed to stderr with the HTTP status)\n"
    "  2  usage error: bad flags, unreadable file, bad data\n"
    "  3  the node could not be reached or did not answer within --timeout-ms";

int ExitCodeOf(const absl::Status& status);

// The node's error text from an error body: the "error" member of {"error": "..."} if the body
// is such JSON, else the body itself (trimmed, abbreviated), or "(empty body)".
std::string NodeErrorText(std::string_view body);

// UNKNOWN: "the node at <node> answered 404 Not Found: <the node's error text>".
absl::Status NodeAnswered(std::string_view node, const HttpResult& result);

// Request() that also turns a non-2xx answer into NodeAnswered.
absl::StatusOr<HttpResult> Call(
    HttpClient& client, std::string_view method, std::string_view target,
    std::string_view body = {},
    const std::vector<std::pair<std::string, std::string>>& headers = {});

// Flags every client command takes.
struct NodeFlags {
  std::string node = "127.0.0.1:8000";  // --node, or $HIVEMESH_NODE
  std::string output = "table";         // -o table|json
  int timeout_ms = 5000;
};

// A call to the node's admin API: `method target` with `body`, sending the admin token of
// `admin_token_file` (none when empty) as "Authorization: Bearer <token>".
absl::StatusOr<HttpResult> AdminCall(const NodeFlags& node, const std::string& admin_token_file,
                                     std::string_view method, std::string_view target,
                                     std::string_view body = {});

// The bytes of `path` ("-": standard input). INVALID_ARGUMENT naming the file if unreadable.
absl::StatusOr<std::string> ReadInputFile(const std::string& path);

// Prints "hivemesh <command>: <message>" to stderr and returns the status's exit code.
int Fail(std::string_view command, const absl::Status& status);

}  // namespace hivemesh::cli
