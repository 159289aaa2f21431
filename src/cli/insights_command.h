// `hivemesh pub` and `hivemesh sub`: publishing an insight at a node (POST /v1/insights/<topic>)
// and following the insights that match filters, published anywhere in the mesh (GET
// /v1/insights/stream, read as it comes; docs/insights.md).
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "cli/cli_common.h"

namespace hivemesh::cli {

struct InsightsFlags {
  NodeFlags node;
  std::string topic;                 // pub
  std::string values;                // pub: a JSON object, or "-" for standard input
  std::vector<std::string> filters;  // sub
  int count = 0;                     // sub: stop after this many insights (0: no limit)
  int for_ms = 0;                    // sub: stop after this long (0: no limit)
  CLI::App* pub = nullptr;
  CLI::App* sub = nullptr;
};

void AddInsightsCommands(CLI::App& app, InsightsFlags& flags);
// True if one of them was parsed; `*exit_code` is then its exit code (cli_common.h).
bool RunInsights(const InsightsFlags& flags, int* exit_code);

// `text` percent-encoded for a URL's path or query, '/' and MQTT's '+' kept ('#' is %23).
std::string UrlEncodeTopic(std::string_view text);
// The line `sub` prints for an insight's document in a table: "<topic> <values> (<node> #<seq>)";
// the document itself if it cannot be read.
std::string FormatInsightLine(std::string_view document);

}  // namespace hivemesh::cli
