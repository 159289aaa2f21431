#include "cli/models_command.h"

#include <cstdio>

#include "cli/cli_flags.h"
#include "cli/mesh_view.h"

namespace hivemesh::cli {

CLI::App* AddModelsCommand(CLI::App& app, ModelsFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "models", "list the mesh's models: where each is hosted, how ready and how loaded");
  AddNodeFlags(cmd, flags.node,
               "  hivemesh models\n"
               "  hivemesh models --node 10.0.0.7:8000 -o json");
  return cmd;
}

int RunModels(const ModelsFlags& flags) {
  HttpClient client(flags.node.node, flags.node.timeout_ms);
  absl::StatusOr<HttpResult> reply = Call(client, "GET", "/v1/mesh/members");
  if (!reply.ok()) return Fail("models", reply.status());
  absl::StatusOr<std::vector<Member>> members = ParseMembers(reply->body);
  if (!members.ok()) return Fail("models", members.status());
  const std::vector<ModelRow> rows = AggregateModels(*members);
  if (flags.node.output == "json") {
    std::printf("%s\n", ModelsJson(rows).c_str());
  } else {
    std::fputs(FormatModelsTable(rows).c_str(), stdout);
  }
  return kExitOk;
}

}  // namespace hivemesh::cli
