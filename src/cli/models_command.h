// `hivemesh models`: every model of the mesh, one row each, from one node's member list
// (GET /v1/mesh/members): versions, which nodes host it and how many are ready, data policy,
// requests queued and running across the hosts, service time.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct ModelsFlags {
  NodeFlags node;
};

CLI::App* AddModelsCommand(CLI::App& app, ModelsFlags& flags);
int RunModels(const ModelsFlags& flags);

}  // namespace hivemesh::cli
