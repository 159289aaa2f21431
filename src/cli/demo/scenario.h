// Scenario: what `hivemesh demo` runs, read from a YAML file (examples/edge-site/scenario.yaml):
// the nodes (each with its own agent config file), the clients that drive traffic into them
// (cameras sending frames, vibration sensors sending windows), and when a node is killed and
// restarted. Pure: parsing and scaling touch no process or socket; paths are resolved against
// the scenario file's folder.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::demo {

struct NodeSpec {
  std::string name;
  std::string config_path;                    // agent settings (YAML), absolute
  std::map<std::string, std::string> labels;  // from the config's `labels`, e.g. zone
  std::vector<std::string> models;            // from the config's `models`; empty = all
  std::string zone() const;                   // labels["zone"], or "" when unset
};

// A camera sends JPEG frames of the sample video to its node's people detector, at `fps`, and at
// `burst_fps` for `burst_for_s` seconds every `burst_every_s` seconds (starting at the first
// period's end). Every `face_every`-th frame also goes to the face detector (0: never).
struct CameraSpec {
  std::string name;
  std::string node;
  std::vector<std::string> fallback;  // nodes to send to while `node` cannot be reached
  double fps = 4;
  double burst_fps = 0;
  double burst_every_s = 0;
  double burst_for_s = 0;
  int face_every = 0;
  double RateAt(double t_s) const;  // frames per second at time t
};

// A vibration sensor sends windows of 128 samples at `rate_hz`; a fraction `fault_ratio` of them
// carry an injected fault.
struct SensorSpec {
  std::string name;
  std::string node;
  std::vector<std::string> fallback;
  double rate_hz = 50;
  double fault_ratio = 0.05;
};

struct Scenario {
  std::string dir;         // folder of the scenario file
  std::string repository;  // model repository shared by the nodes, absolute
  double duration_s = 90;
  std::vector<NodeSpec> nodes;
  std::vector<CameraSpec> cameras;
  std::vector<SensorSpec> sensors;
  // Chaos: `kill` is SIGKILLed at kill_at × duration and started again at restart_at × duration.
  std::string kill;
  double kill_at = 0.4;
  double restart_at = 0.65;

  const NodeSpec* Node(const std::string& name) const;
};

// Reads and checks a scenario: every field's type, nodes named once, clients pointing at known
// nodes, rates > 0, 0 <= kill_at < restart_at < 1. Errors name the file and the field.
absl::StatusOr<Scenario> LoadScenario(const std::string& path);

// The scenario with `nodes` nodes: fewer than the scenario's keeps the first ones (and the
// clients of those); more adds copies of the scenario's nodes in turn (cam-1 -> cam-3, ...),
// each with copies of the clients attached to its original. REQUIRES: nodes >= 1.
absl::StatusOr<Scenario> ScaleScenario(const Scenario& s, int nodes);

}  // namespace hivemesh::demo
