#include "cli/health_command.h"

#include <cstdio>

#include "cli/cli_flags.h"

namespace hivemesh::cli {

CLI::App* AddHealthCommand(CLI::App& app, HealthFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "health", "exit 0 when a node is ready to serve (/v2/health/ready), 1 when it is not");
  cmd->add_flag("--live", flags.live,
                "ask whether the node is live (/v2/health/live) rather than ready");
  AddNodeFlags(cmd, flags.node,
               "  hivemesh health\n"
               "  hivemesh health --node 10.0.0.7:8000 --live");
  return cmd;
}

int RunHealth(const HealthFlags& flags) {
  const char* what = flags.live ? "live" : "ready";
  HttpClient client(flags.node.node, flags.node.timeout_ms);
  absl::StatusOr<HttpResult> reply =
      Call(client, "GET", flags.live ? "/v2/health/live" : "/v2/health/ready");
  if (!reply.ok()) return Fail("health", reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
  } else {
    std::printf("%s: %s\n", flags.node.node.c_str(), what);
  }
  return kExitOk;
}

}  // namespace hivemesh::cli
