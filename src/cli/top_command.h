// `hivemesh top`: live load of every node of the mesh, refreshed in place on a terminal (plain
// repeated tables otherwise, or one JSON object per line with -o json) until Ctrl-C or --count
// refreshes. The member list comes from --node; each member's counters from its own API
// (api_address): /v2/models/stats (requests computed, queued, running) and /v1/mesh/routes
// (requests that arrived there and were served locally or forwarded). Rates are the difference
// between two readings, so the first refresh comes one interval after the start.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct TopFlags {
  NodeFlags node;
  int interval_ms = 1000;
  int count = 0;  // 0: until Ctrl-C
};

CLI::App* AddTopCommand(CLI::App& app, TopFlags& flags);
int RunTop(const TopFlags& flags);

}  // namespace hivemesh::cli
