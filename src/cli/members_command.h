// `hivemesh members`: the mesh's members as one node sees them (GET /v1/mesh/members), as a table
// or the node's JSON.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct MembersFlags {
  NodeFlags node;
};

CLI::App* AddMembersCommand(CLI::App& app, MembersFlags& flags);
// Returns the exit code (cli_common.h).
int RunMembers(const MembersFlags& flags);

}  // namespace hivemesh::cli
