// NodeFleet: the demo's nodes as real `hivemesh agent` processes on loopback, a secure mesh: the
// first node creates it, the demo takes a join token from it (its admin API, from this host), and
// the others join with that token. Each node gets its scenario config file plus fixed free ports
// and a state folder of its own (its key and certificate), logs to
// <work_dir>/logs/<name>.log, runs in its
// own process group (a terminal's Ctrl-C reaches the demo, which stops the nodes in order) and
// dies with the demo if the demo dies (PR_SET_PDEATHSIG). A node killed and started again keeps
// its ports, like a device that reboots.
//
// Thread safety: none; the demo's main thread drives it. The destructor stops every node.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/demo/scenario.h"

namespace hivemesh::demo {

class NodeFleet {
 public:
  // `binary`: the hivemesh executable; `work_dir` must exist.
  NodeFleet(std::string binary, std::string work_dir, const Scenario& scenario);
  ~NodeFleet();
  NodeFleet(const NodeFleet&) = delete;
  NodeFleet& operator=(const NodeFleet&) = delete;

  // Arguments every node gets too (before StartAll), e.g. the MQTT broker's address.
  void AddArgs(std::vector<std::string> args) {
    extra_args_.insert(extra_args_.end(), args.begin(), args.end());
  }
  // Starts the first node, takes a join token from it, starts the others with it, then waits
  // until each is ready and sees all the others alive.
  absl::Status StartAll(std::chrono::seconds timeout);
  // What the nodes say of their security (GET /v2): "N of N nodes hold a certificate of mesh
  // <id>: ..." or which do not.
  std::string SecuritySummary();
  // Starts one node (again), joining the others. Does not wait.
  absl::Status Start(const std::string& name);
  // True once `name` answers ready and sees every other running node alive.
  bool Ready(const std::string& name);
  // SIGKILL, and reaps the process.
  void Kill(const std::string& name);
  // SIGTERM to every node (they drain), SIGKILL after `grace`. Returns the names of nodes that
  // had to be killed or exited non-zero, with why.
  std::vector<std::string> StopAll(std::chrono::seconds grace);

  std::string ApiAddress(const std::string& name) const;  // 127.0.0.1:port
  bool Running(const std::string& name);
  const std::string& log_dir() const { return log_dir_; }

 private:
  struct Proc {
    const NodeSpec* spec = nullptr;
    int http_port = 0, gossip_port = 0;
    pid_t pid = -1;
  };
  std::string binary_;
  std::string log_dir_;
  std::string state_dir_;  // <work dir>/state/<node>: each node keeps its key across restarts
  std::string repository_;
  std::map<std::string, Proc> procs_;
  std::string token_;               // a join token of the mesh the first node made
  std::vector<std::string> order_;  // scenario order
  std::vector<std::string> extra_args_;
};

}  // namespace hivemesh::demo
