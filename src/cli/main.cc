// The `hivemesh` command.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "absl/synchronization/mutex.h"
#include "agent/agent.h"
#include "agent/agent_config.h"
#include "base/strings.h"
#include "cli/cli_common.h"
#include "cli/demo/demo_command.h"
#include "cli/health_command.h"
#include "cli/infer_command.h"
#include "cli/insights_command.h"
#include "cli/issuer_command.h"
#include "cli/members_command.h"
#include "cli/models_command.h"
#include "cli/objects_command.h"
#include "cli/top_command.h"
#include "membership/keyring.h"

int main(int argc, char** argv) {
#ifndef HIVEMESH_SANITIZED
  // Debian's Abseil is built with its deadlock detector on: every Mutex::Lock then updates a
  // graph of lock orders, about 3,000 instructions per served request. The sanitizer build that
  // `make test` runs keeps it (with clang's lock analysis); the node people deploy does not pay it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  CLI::App app{"hivemesh: an edge-AI inference mesh node (KServe v2 API)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", HIVEMESH_VERSION);
  app.footer(std::string("Exit codes of infer, models, top, health, members, token, node, cert, "
                         "policy and ca:\n") +
             hivemesh::cli::kExitCodesHelp + "\nSee each command's --help, and docs/cli.md.");

  CLI::App* agent_cmd = app.add_subcommand(
      "agent", "run a node: serve the model repository over the KServe v2 REST API");
  hivemesh::AgentFlags agent_flags(*agent_cmd);

  hivemesh::cli::InferFlags infer_flags;
  CLI::App* infer_cmd = hivemesh::cli::AddInferCommand(app, infer_flags);
  hivemesh::cli::ModelsFlags models_flags;
  CLI::App* models_cmd = hivemesh::cli::AddModelsCommand(app, models_flags);
  hivemesh::cli::TopFlags top_flags;
  CLI::App* top_cmd = hivemesh::cli::AddTopCommand(app, top_flags);
  hivemesh::cli::HealthFlags health_flags;
  CLI::App* health_cmd = hivemesh::cli::AddHealthCommand(app, health_flags);
  hivemesh::cli::MembersFlags members_flags;
  CLI::App* members_cmd = hivemesh::cli::AddMembersCommand(app, members_flags);
  hivemesh::cli::TokenFlags token_flags;
  CLI::App* token_cmd = hivemesh::cli::AddTokenCommand(app, token_flags);
  hivemesh::cli::NodeCommandFlags node_flags;
  CLI::App* node_cmd = hivemesh::cli::AddNodeCommand(app, node_flags);
  hivemesh::cli::CertFlags cert_flags;
  CLI::App* cert_cmd = hivemesh::cli::AddCertCommand(app, cert_flags);
  hivemesh::cli::CaFlags ca_flags;
  CLI::App* ca_cmd = hivemesh::cli::AddCaCommand(app, ca_flags);
  hivemesh::cli::GossipKeysFlags gossip_keys_flags;
  CLI::App* gossip_keys_cmd = hivemesh::cli::AddGossipKeysCommand(app, gossip_keys_flags);
  hivemesh::cli::PolicyFlags policy_flags;
  CLI::App* policy_cmd = hivemesh::cli::AddPolicyCommand(app, policy_flags);

  hivemesh::cli::ObjectsFlags objects_flags;
  hivemesh::cli::AddObjectsCommands(app, objects_flags);
  hivemesh::cli::InsightsFlags insights_flags;
  hivemesh::cli::AddInsightsCommands(app, insights_flags);

  hivemesh::demo::DemoFlags demo_flags;
  CLI::App* demo_cmd = hivemesh::demo::AddDemoCommand(app, demo_flags);

  CLI::App* keygen_cmd = app.add_subcommand(
      "keygen", "print a new random gossip encryption key (base64, AES-256) for --gossip-keys");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every parse error is a usage error (2), whatever CLI11's code.
    const int code = app.exit(e);
    return code == 0 ? 0 : hivemesh::cli::kExitUsage;
  }

  if (agent_cmd->parsed()) {
    absl::StatusOr<hivemesh::AgentConfig> config = agent_flags.Resolve();
    if (!config.ok()) {
      std::fprintf(stderr, "hivemesh agent: %s\n",
                   std::string(hivemesh::MessageOf(config.status())).c_str());
      return 2;
    }
    return hivemesh::RunAgent(*config, [&agent_flags] { return agent_flags.Resolve(); });
  }
  if (int code = 0; hivemesh::cli::RunObjects(objects_flags, &code)) return code;
  if (int code = 0; hivemesh::cli::RunInsights(insights_flags, &code)) return code;
  if (infer_cmd->parsed()) return hivemesh::cli::RunInfer(infer_flags);
  if (models_cmd->parsed()) return hivemesh::cli::RunModels(models_flags);
  if (top_cmd->parsed()) return hivemesh::cli::RunTop(top_flags);
  if (health_cmd->parsed()) return hivemesh::cli::RunHealth(health_flags);
  if (members_cmd->parsed()) return hivemesh::cli::RunMembers(members_flags);
  if (token_cmd->parsed()) return hivemesh::cli::RunToken(token_flags);
  if (node_cmd->parsed()) return hivemesh::cli::RunNode(node_flags);
  if (cert_cmd->parsed()) return hivemesh::cli::RunCert(cert_flags);
  if (policy_cmd->parsed()) return hivemesh::cli::RunPolicy(policy_flags);
  if (ca_cmd->parsed()) return hivemesh::cli::RunCa(ca_flags);
  if (gossip_keys_cmd->parsed()) return hivemesh::cli::RunGossipKeys(gossip_keys_flags);
  if (demo_cmd->parsed()) return hivemesh::demo::RunDemo(demo_flags);
  if (keygen_cmd->parsed()) {
    std::printf("%s\n", hivemesh::membership::Keyring::GenerateKey().c_str());
    return 0;
  }
  return 0;
}
