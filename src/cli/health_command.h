// `hivemesh health`: whether a node is ready (GET /v2/health/ready) or live (/v2/health/live),
// as an exit code: what a container's health check, a probe or a script calls where there is no
// curl.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct HealthFlags {
  NodeFlags node;
  bool live = false;  // --live: the process answers, ready or not
};

CLI::App* AddHealthCommand(CLI::App& app, HealthFlags& flags);
// 0 ready (or live), 1 the node answered not ready, 3 unreachable (cli_common.h).
int RunHealth(const HealthFlags& flags);

}  // namespace hivemesh::cli
