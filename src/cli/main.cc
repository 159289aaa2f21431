// The `hivemesh` command.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "agent/agent.h"
#include "agent/agent_config.h"
#include "base/strings.h"
#include "cli/members_command.h"
#include "membership/keyring.h"

int main(int argc, char** argv) {
  CLI::App app{"hivemesh: an edge-AI inference mesh node (KServe v2 API)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", HIVEMESH_VERSION);

  CLI::App* agent_cmd = app.add_subcommand(
      "agent", "run a node: serve the model repository over the KServe v2 REST API");
  hivemesh::AgentFlags agent_flags(*agent_cmd);

  std::string node = "127.0.0.1:8000";
  std::string output = "table";
  CLI::App* members_cmd =
      app.add_subcommand("members", "list the mesh's members as a node sees them");
  members_cmd->add_option("--node", node,
                          "host:port of the node's HTTP API [default: 127.0.0.1:8000]");
  members_cmd->add_option("-o,--output", output, "table or json [default: table]")
      ->check(CLI::IsMember({"table", "json"}));

  CLI::App* keygen_cmd = app.add_subcommand(
      "keygen", "print a new random gossip encryption key (base64, AES-256) for --gossip-keys");

  CLI11_PARSE(app, argc, argv);

  if (agent_cmd->parsed()) {
    absl::StatusOr<hivemesh::AgentConfig> config = agent_flags.Resolve();
    if (!config.ok()) {
      std::fprintf(stderr, "hivemesh agent: %s\n",
                   std::string(hivemesh::MessageOf(config.status())).c_str());
      return 2;
    }
    return hivemesh::RunAgent(*config, [&agent_flags] { return agent_flags.Resolve(); });
  }
  if (members_cmd->parsed()) return hivemesh::RunMembersCommand(node, output);
  if (keygen_cmd->parsed()) {
    std::printf("%s\n", hivemesh::membership::Keyring::GenerateKey().c_str());
    return 0;
  }
  return 0;
}
