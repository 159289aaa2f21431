// `hivemesh apply|get|delete`: manifests applied to the mesh at any node, listed and deleted
// (docs/services.md), through the node's /v1/objects API (admin calls, like the tokens').
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct ObjectsFlags {
  NodeFlags node;
  std::string admin_token_file;
  std::string file;  // -f FILE|DIR|-
  std::string kind;  // get/delete: services|workloads (and the aliases)
  std::string name;  // delete KIND NAME
  CLI::App* apply = nullptr;
  CLI::App* get = nullptr;
  CLI::App* remove = nullptr;
};

// Adds the three commands to `app`.
void AddObjectsCommands(CLI::App& app, ObjectsFlags& flags);
// True if one of them was parsed; `*exit_code` is then its exit code (cli_common.h).
bool RunObjects(const ObjectsFlags& flags, int* exit_code);

// The manifests of `path`: a file, "-" (standard input), or a folder (its *.yaml, *.yml and *.json
// files in name order, joined as YAML documents). INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<std::string> ReadManifests(const std::string& path);

// The table `get` prints for the node's GET /v1/objects answer.
absl::StatusOr<std::string> FormatObjects(std::string_view body, int64_t now_ms);
// The table of `get endpoints` from the body of GET /v1/endpoints.
absl::StatusOr<std::string> FormatEndpoints(std::string_view body);

}  // namespace hivemesh::cli
