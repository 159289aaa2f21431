// `hivemesh top`'s pure parts: reading a node's counters from its /v2/models/stats and
// /v1/mesh/routes, turning two readings into rates, and formatting one refresh as a table or as
// one line of JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/mesh_view.h"

namespace hivemesh::cli {

// One reading of one node's own counters.
struct NodeCounters {
  uint64_t inferences = 0;  // sum of inference_count over its models (requests it computed)
  int64_t queued = 0;       // sum of queue_depth, live
  int64_t running = 0;      // sum of in_flight, live
  // From /v1/mesh/routes: requests that arrived at this node and were served here, or sent on to
  // a peer. Unset if the node does not report routes.
  std::optional<uint64_t> local;
  std::optional<uint64_t> forwarded;
};

// Fills inferences, queued and running from a /v2/models/stats body. INTERNAL if unreadable.
absl::StatusOr<NodeCounters> ParseModelStats(std::string_view json);
// Fills local and forwarded from a /v1/mesh/routes body. INTERNAL if unreadable.
absl::Status ParseRoutes(std::string_view json, NodeCounters& counters);

// (after - before) / elapsed, or unset when it cannot be known: no time passed, or the counter
// went down (the node restarted).
std::optional<double> RatePerSecond(uint64_t before, uint64_t after,
                                    std::chrono::nanoseconds elapsed);

// One member in one refresh.
struct NodeSample {
  Member member;
  std::optional<NodeCounters> counters;  // unset if the node was not (or could not be) read
  std::string error;                     // why not, if it was tried
  std::chrono::steady_clock::time_point at;
};

struct TopRow {
  std::string name, state, zone, api_address, error;
  bool draining = false;
  std::vector<std::string> models;
  int64_t queued = 0;  // the node's live counters, else its last gossiped load report
  int64_t running = 0;
  std::optional<double> requests_per_s;  // needs a reading of the same node in `before`
  std::optional<double> local_per_s, forwarded_per_s;
  std::optional<uint64_t> local, forwarded;  // totals since the node started
};

// Rows for the current samples, sorted by name, with rates from the previous samples by name.
std::vector<TopRow> TopRows(const std::vector<NodeSample>& now,
                            const std::map<std::string, NodeSample>& before);

// NAME STATE ZONE MODELS QUEUED RUNNING REQ/S LOCAL FWD
std::string FormatTopTable(const std::vector<TopRow>& rows);

// {"time_ms":..,"nodes":[{"name":..,"state":..,"draining":..,"zone":..,"api_address":..,"models":[..],
//   "queued":n,"running":n,"requests_per_s":x|null,"local":n|null,"forwarded":n|null,
//   "local_per_s":x|null,"forwarded_per_s":x|null[,"error":".."]}]}   (one line)
std::string TopJson(const std::vector<TopRow>& rows, int64_t unix_time_ms);

}  // namespace hivemesh::cli
