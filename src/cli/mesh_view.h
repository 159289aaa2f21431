// The mesh as `GET /v1/mesh/members` describes it, and the views the commands make of it: one row
// per member (`hivemesh members`), one row per model across the mesh (`hivemesh models`). Pure.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::cli {

struct ModelAdvert {  // a model as a member advertises it
  std::string name;
  std::vector<std::string> versions;
  bool ready = false;
  std::string data_policy;
  int64_t instances = 0;
};

struct ModelLoad {  // from the member's last gossiped load report
  std::string name;
  int64_t queue_depth = 0;
  int64_t in_flight = 0;
  int64_t ewma_service_us = 0;
};

struct Member {
  std::string name;
  std::string address;  // gossip
  std::string state;    // alive, suspect, dead, left
  std::string api_address;
  std::string version;  // its software release; "" from a node that does not say
  bool draining = false;
  bool insecure = false;  // runs with --insecure
  std::map<std::string, std::string> labels;
  std::vector<ModelAdvert> models;
  std::optional<int64_t> load_age_ms;  // unset: no load report yet
  std::vector<ModelLoad> load;

  bool gone() const { return state == "dead" || state == "left"; }
  // Alive, not draining: the member takes new work.
  bool serving() const { return state == "alive" && !draining; }
  std::string label(const std::string& key) const;  // "" if absent
};

// INTERNAL if `json` is not a members document.
absl::StatusOr<std::vector<Member>> ParseMembers(std::string_view json);

// `hivemesh members`: NAME STATE GOSSIP API LABELS MODELS LOAD AGE.
std::string FormatMembersTable(const std::vector<Member>& members);

// One model across the mesh. Members that are dead or have left are not counted.
struct ModelRow {
  struct Host {
    std::string node;
    bool ready = false;  // the model is ready there and the member is alive and not draining
  };
  std::string name;
  std::vector<std::string> versions;       // union over the hosts, in numeric order
  std::vector<Host> hosts;                 // by node name
  std::vector<std::string> data_policies;  // distinct, sorted (one unless configs disagree)
  int64_t queued = 0;                      // sum over hosts, from their load reports
  int64_t running = 0;
  std::optional<int64_t> service_us_min;  // over hosts that have measured one (EWMA > 0)
  std::optional<int64_t> service_us_max;

  int ready_hosts() const;
};

// Rows sorted by model name.
std::vector<ModelRow> AggregateModels(const std::vector<Member>& members);

// MODEL VERSIONS NODES HOSTS POLICY QUEUED RUNNING SERVICE
std::string FormatModelsTable(const std::vector<ModelRow>& rows);

// {"models":[{"name":..,"versions":[..],"ready":n,"total":n,"nodes":[{"name":..,"ready":..}],
//   "data_policy":..,"queued":n,"running":n,"service_us":{"min":n,"max":n}|null}]}
std::string ModelsJson(const std::vector<ModelRow>& rows);

}  // namespace hivemesh::cli
