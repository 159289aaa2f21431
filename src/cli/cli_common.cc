#include "cli/cli_common.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "base/status_macros.h"
#include "base/strings.h"
#include "cli/table.h"
#include "codec/infer_codec.h"
#include "transport/http_server.h"

namespace hivemesh::cli {

int ExitCodeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
      return kExitUsage;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnreachable;
    default:
      return kExitNodeError;
  }
}

std::string NodeErrorText(std::string_view body) {
  if (std::optional<std::string> error = DecodeError(body)) return *std::move(error);
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r' || body.back() == ' ')) {
    body.remove_suffix(1);
  }
  if (body.empty()) return "(empty body)";
  return Abbreviate(body, 300);
}

absl::Status NodeAnswered(std::string_view node, const HttpResult& result) {
  return absl::UnknownError(StrCat("the node at ", node, " answered ", result.status, " ",
                                   HttpReason(result.status), ": ", NodeErrorText(result.body)));
}

absl::StatusOr<HttpResult> Call(HttpClient& client, std::string_view method,
                                std::string_view target, std::string_view body,
                                const std::vector<std::pair<std::string, std::string>>& headers) {
  absl::StatusOr<HttpResult> result = client.Request(method, target, body, headers);
  if (!result.ok()) return result.status();
  if (result->status < 200 || result->status > 299) {
    return NodeAnswered(client.host_port(), *result);
  }
  return result;
}

absl::StatusOr<std::string> ReadInputFile(const std::string& path) {
  if (path == "-") {
    std::ostringstream in;
    in << std::cin.rdbuf();
    if (std::cin.bad()) return absl::InvalidArgumentError("cannot read standard input");
    return in.str();
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(StrCat("cannot read '", path, "': it is a folder"));
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::InvalidArgumentError(StrCat("cannot read '", path, "': ", std::strerror(errno)));
  }
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) {
    return absl::InvalidArgumentError(StrCat("cannot read '", path, "': ", std::strerror(errno)));
  }
  return bytes;
}

int Fail(std::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "hivemesh %.*s: %.*s\n", static_cast<int>(command.size()), command.data(),
               static_cast<int>(status.message().size()), status.message().data());
  return ExitCodeOf(status);
}

// A call to the node's admin API: `method target` with `body`, sending the admin token of
// `admin_token_file` (none when empty) as "Authorization: Bearer <token>".
absl::StatusOr<HttpResult> AdminCall(const NodeFlags& node, const std::string& admin_token_file,
                                     std::string_view method, std::string_view target,
                                     std::string_view body) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!admin_token_file.empty()) {
    HM_ASSIGN_OR_RETURN(std::string token, ReadInputFile(admin_token_file));
    std::string_view t = token;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) {
      t.remove_suffix(1);
    }
    headers.emplace_back("Authorization", StrCat("Bearer ", t));
  }
  HttpClient client(node.node, node.timeout_ms);
  return Call(client, method, target, body, headers);
}

}  // namespace hivemesh::cli
