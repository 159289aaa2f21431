#include "cli/cli_flags.h"

namespace hivemesh::cli {

void AddNodeFlags(CLI::App* cmd, NodeFlags& flags, const std::string& examples) {
  cmd->add_option("--node", flags.node,
                  "host:port of a node's HTTP API [default: 127.0.0.1:8000, or $HIVEMESH_NODE]")
      ->envname("HIVEMESH_NODE");
  cmd->add_option("-o,--output", flags.output, "table or json [default: table]")
      ->check(CLI::IsMember({"table", "json"}));
  cmd->add_option("--timeout-ms", flags.timeout_ms,
                  "how long to wait for the node's answer [default: 5000]")
      ->check(CLI::Range(1, 3600 * 1000));
  cmd->footer("Examples:\n" + examples + "\n\nExit codes:\n" + kExitCodesHelp);
}

}  // namespace hivemesh::cli
