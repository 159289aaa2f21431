#include "cli/members_command.h"

#include <cstdio>

#include "cli/cli_flags.h"
#include "cli/mesh_view.h"

namespace hivemesh::cli {

CLI::App* AddMembersCommand(CLI::App& app, MembersFlags& flags) {
  CLI::App* cmd = app.add_subcommand("members", "list the mesh's members as a node sees them");
  AddNodeFlags(cmd, flags.node,
               "  hivemesh members\n"
               "  hivemesh members --node 10.0.0.7:8000 -o json");
  return cmd;
}

int RunMembers(const MembersFlags& flags) {
  HttpClient client(flags.node.node, flags.node.timeout_ms);
  absl::StatusOr<HttpResult> reply = Call(client, "GET", "/v1/mesh/members");
  if (!reply.ok()) return Fail("members", reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
    return kExitOk;
  }
  absl::StatusOr<std::vector<Member>> members = ParseMembers(reply->body);
  if (!members.ok()) return Fail("members", members.status());
  std::fputs(FormatMembersTable(*members).c_str(), stdout);
  return kExitOk;
}

}  // namespace hivemesh::cli
