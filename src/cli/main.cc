// The `hivemesh` command.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "agent/agent.h"
#include "agent/agent_config.h"
#include "base/strings.h"

int main(int argc, char** argv) {
  CLI::App app{"hivemesh: an edge-AI inference mesh node (KServe v2 API)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", HIVEMESH_VERSION);

  CLI::App* agent_cmd = app.add_subcommand(
      "agent", "run a node: serve the model repository over the KServe v2 REST API");
  hivemesh::AgentFlags agent_flags(*agent_cmd);

  CLI11_PARSE(app, argc, argv);

  if (agent_cmd->parsed()) {
    absl::StatusOr<hivemesh::AgentConfig> config = agent_flags.Resolve();
    if (!config.ok()) {
      std::fprintf(stderr, "hivemesh agent: %s\n",
                   std::string(hivemesh::MessageOf(config.status())).c_str());
      return 2;
    }
    return hivemesh::RunAgent(*config);
  }
  return 0;
}
