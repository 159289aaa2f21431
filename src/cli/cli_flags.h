// Registering the flags every client command shares on a CLI11 subcommand.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "cli/cli_common.h"

namespace hivemesh::cli {

// Adds --node (also $HIVEMESH_NODE), -o/--output table|json and --timeout-ms to `cmd`, and sets
// its --help footer: `examples` (lines "  hivemesh ...") followed by the exit codes.
void AddNodeFlags(CLI::App* cmd, NodeFlags& flags, const std::string& examples);

}  // namespace hivemesh::cli
