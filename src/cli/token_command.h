// `hivemesh token create|list|revoke`: the join tokens of an issuer node (docs/identity.md), over
// its admin API (/v1/mesh/tokens; the node's admin_access applies: loopback by default, or
// --admin-token-file for a node that wants a bearer token).
#pragma once

#include <CLI/CLI.hpp>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct TokenFlags {
  NodeFlags node;
  std::string admin_token_file;
  std::string role = "node";
  std::string ttl = "24h";
  int uses = 0;
  std::string id;
  CLI::App* create = nullptr;
  CLI::App* list = nullptr;
  CLI::App* revoke = nullptr;
};

CLI::App* AddTokenCommand(CLI::App& app, TokenFlags& flags);
// Returns the exit code (cli_common.h).
int RunToken(const TokenFlags& flags);

// The table `token list` prints for the node's JSON answer (pure; `now_unix` for "expires in").
absl::StatusOr<std::string> FormatTokenList(std::string_view json, int64_t now_unix);

}  // namespace hivemesh::cli
