// `hivemesh demo`: runs a real edge site on this machine. It starts the scenario's nodes as
// separate `hivemesh agent` processes on loopback, drives camera frames and vibration windows
// into them, kills one node with SIGKILL midway and restarts it, prints one live status line,
// then a report: requests per node and model, the failover, the insights computed (people per
// camera over time, vibration anomalies), and whether any frame left its zone. Every node is
// stopped before it returns.
//
// Exit codes: 0 the run was clean (nothing failed, no frame left its zone, every node stopped
// cleanly); 1 the run finished but one of those did not hold; 2 usage error (bad flag, missing
// scenario or frames); 3 the nodes could not be started; 130 interrupted (SIGINT or SIGTERM): the
// report covers the run so far.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace hivemesh::demo {

struct DemoFlags {
  std::string scenario = "examples/edge-site/scenario.yaml";
  double duration_s = 0;  // 0: the scenario's
  int nodes = 0;          // 0: the scenario's
  bool keep_running = false;
  std::string frames = ".cache/samples/vtest-frames";
  std::string work_dir;  // empty: a new folder under /tmp
};

// Adds the `demo` subcommand to `app`, binding its flags to `flags`.
CLI::App* AddDemoCommand(CLI::App& app, DemoFlags& flags);

int RunDemo(const DemoFlags& flags);

}  // namespace hivemesh::demo
