// What an issuer node offers its operators (docs/identity.md), over its admin API (the node's
// admin_access applies: loopback by default, or --admin-token-file for a node that wants a
// bearer token):
//   `hivemesh token create|list|revoke`  join tokens (/v1/mesh/tokens)
//   `hivemesh node revoke NAME`          revokes a member's key (/v1/mesh/revocations)
//   `hivemesh cert issue-client NAME`    a client or operator certificate for a key made here
//                                        (/v1/mesh/client-certificates)
//   `hivemesh cert revoke FILE`          revokes a client certificate's key (/v1/mesh/revocations)
//   `hivemesh policy apply FILE|show`    the mesh's authorization policy (/v1/mesh/policy),
//                                        signed here with an operator's key or by the issuer
//   `hivemesh ca rotate`                 a new root for the mesh (/v1/mesh/ca/rotate)
//   `hivemesh ca export-key|import-key`  the root key off the node and back (/v1/mesh/ca/...)
//   `hivemesh gossip-keys rotate|show`   new gossip keys for the mesh (/v1/mesh/gossip-keys)
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
  std::string name;    // --role client: the client's name
  std::string models;  // --role client: comma-separated model names
  std::string id;
  std::string client;  // revoke --client: the client whose bearer tokens are revoked
  CLI::App* create = nullptr;
  CLI::App* list = nullptr;
  CLI::App* revoke = nullptr;
};

CLI::App* AddTokenCommand(CLI::App& app, TokenFlags& flags);
// Returns the exit code (cli_common.h).
int RunToken(const TokenFlags& flags);

struct NodeCommandFlags {
  NodeFlags node;
  std::string admin_token_file;
  std::string name;
  CLI::App* revoke = nullptr;
};

CLI::App* AddNodeCommand(CLI::App& app, NodeCommandFlags& flags);
int RunNode(const NodeCommandFlags& flags);

struct CertFlags {
  NodeFlags node;
  std::string admin_token_file;
  std::string name;
  std::string role = "client";
  std::string ttl = "30d";
  std::string out = ".";
  std::string cert_file;  // revoke: the client's certificate
  CLI::App* issue_client = nullptr;
  CLI::App* revoke = nullptr;
};

struct CaFlags {
  NodeFlags node;
  std::string admin_token_file;
  std::string out;    // export-key: where the key goes (created, 0600; never overwritten)
  bool keep = false;  // export-key: leave the key on the node too
  std::string file;   // import-key: the key to bring back
  CLI::App* rotate = nullptr;
  CLI::App* export_key = nullptr;
  CLI::App* import_key = nullptr;
};

CLI::App* AddCaCommand(CLI::App& app, CaFlags& flags);
int RunCa(const CaFlags& flags);

struct GossipKeysFlags {
  NodeFlags node;
  std::string admin_token_file;
  CLI::App* rotate = nullptr;
  CLI::App* show = nullptr;
};

CLI::App* AddGossipKeysCommand(CLI::App& app, GossipKeysFlags& flags);
int RunGossipKeys(const GossipKeysFlags& flags);

CLI::App* AddCertCommand(CLI::App& app, CertFlags& flags);
int RunCert(const CertFlags& flags);

struct PolicyFlags {
  NodeFlags node;
  std::string admin_token_file;
  std::string file;
  // apply: sign the document with this operator certificate's key (hivemesh cert issue-client
  // NAME --role operator): any node takes it, no admin access needed.
  std::string operator_cert;
  std::string operator_key;
  CLI::App* apply = nullptr;
  CLI::App* show = nullptr;
};

CLI::App* AddPolicyCommand(CLI::App& app, PolicyFlags& flags);
int RunPolicy(const PolicyFlags& flags);

// The table `token list` prints for the node's JSON answer (pure; `now_unix` for "expires in").
absl::StatusOr<std::string> FormatTokenList(std::string_view json, int64_t now_unix);

}  // namespace hivemesh::cli
