// Helpers for integration tests of several agents: finding an agent's gossip address, waiting for
// a condition, and a closed-loop load generator that records every outcome and which node
// served each request.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hivemesh::test {

// The gossip host:port of the agent whose HTTP API is on `port` (from /v1/mesh/stats).
std::string GossipAddress(int port);

// Polls `condition` every 20 ms until it holds (true) or `timeout` passes (false).
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// How many alive peers the agent on `port` lists as hosting `model` (from /v1/mesh/members,
// counting members other than itself whose models include it).
int PeersHosting(int port, const std::string& model);

// A counter from the agent's /v1/mesh/routes: `key` of the whole node ("local", "forwarded",
// "retries", "rejected") or, with `peer`, of that peer ("sent", "failures", "times_ejected").
// -1 if absent.
long RouteCounter(int port, const std::string& key, const std::string& peer = "");

// Waits (up to 30 s) until the agent on `port` says its view of the mesh has settled
// (/v1/mesh/routes "settling": false): from then on a model no member announced is 404 at once,
// not held and answered 503 (routing/forwarder.h, MeshDirectory::Settling).
bool WaitSettled(int port);

class LoadGenerator;

// `threads` clients, each on its own keep-alive connection to `port`, send `body` to `path` in
// a loop (optionally pausing `interval` between requests) until Stop().
class LoadGenerator {
 public:
  struct Result {
    long ok = 0;
    std::map<int, long> by_status;          // every non-200 status and how many
    std::map<std::string, long> served_by;  // successful responses by Hivemesh-Served-By
    std::vector<std::string> failures;      // the first few failures: status and body
    // "ok=N node-a=N node-b=N 503=N first failure: ..." for test messages.
    std::string Describe() const;
  };
  LoadGenerator(int port, std::string path, std::string body, int threads,
                std::chrono::milliseconds interval = std::chrono::milliseconds(0));
  ~LoadGenerator();
  Result Stop();
  Result Snapshot() const;  // so far, without stopping

 private:
  void Run();
  const int port_;
  const std::string path_, body_;
  const std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  Result result_;  // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace hivemesh::test
