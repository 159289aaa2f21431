// What the demo saw, request by request, and the summaries it prints: the live status line, the
// table per node and model, the insights (people per camera over time, vibration anomalies) and
// the data-policy check (frames served outside their camera's zone). Pure functions over a list
// of outcomes; the Recorder is the only shared, locked piece.
#pragma once

#include "absl/synchronization/mutex.h"
#include "cli/demo/insight_sinks.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace hivemesh::demo {

enum class ClientKind { kCamera, kSensor };

// One request as a client saw it.
struct Outcome {
  double t_s = 0;  // when it was sent, seconds since traffic started
  ClientKind kind = ClientKind::kCamera;
  std::string client;   // camera or sensor name
  std::string node;     // the client's own node: where it sends first
  std::string sent_to;  // where it was finally sent (node, or a fallback when node was down)
  std::string model;
  std::string served_by;  // from the response; empty when there was no successful answer
  int status = 0;         // HTTP status of the final answer; 0: no answer (transport failure)
  double latency_ms = 0;  // from the first send to the final answer, client failover included
  std::string error;      // why it failed, when it failed
  std::string trace;      // the W3C trace id the client sent (traceparent)
  // Results, when the model's answer carries them.
  int count = -1;         // people or faces found
  double p_fault = -1;    // vibration: probability of a fault
  bool injected = false;  // vibration: the window carried an injected fault
  bool ok() const { return status == 200; }
};

class Recorder {
 public:
  void Add(Outcome o);
  std::vector<Outcome> Snapshot() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<Outcome> outcomes_ ABSL_GUARDED_BY(mu_);
};

// Totals over all requests. local / offloaded: served by the node the request was sent to, or
// by a peer it forwarded to; failover: sent to a fallback node because the client's own node
// could not be reached (also counted as local or offloaded where it landed).
struct Totals {
  size_t requests = 0, local = 0, offloaded = 0, failover = 0, failed = 0;
  double p50_ms = 0, p99_ms = 0;
};
Totals Summarize(const std::vector<Outcome>& outcomes);

// "[ 42s/90s] 1,234 requests | local 900 | offloaded 300 | client failover 4 | failed 0 |
//  p50 35 ms | p99 180 ms  <note>"
std::string LiveLine(const std::vector<Outcome>& outcomes, double elapsed_s, double duration_s,
                     const std::string& note);

// One row per (node, model) that received or served anything. For a node: requests = the
// requests clients sent to it; local = of those, served by it; offloaded out = served by a
// peer; offloaded in = requests sent to another node that it served; errors = requests sent to
// it that failed; p50/p99 of the requests sent to it (end to end, as the client saw them).
struct NodeModelRow {
  std::string node, model;
  size_t requests = 0, local = 0, offloaded_out = 0, offloaded_in = 0, errors = 0;
  double p50_ms = 0, p99_ms = 0;
};
std::vector<NodeModelRow> NodeModelTable(const std::vector<Outcome>& outcomes);

// Frames (camera requests) answered by a node whose zone differs from the zone of the camera's
// own node. `zones`: node -> zone.
size_t FramesOutsideZone(const std::vector<Outcome>& outcomes,
                         const std::map<std::string, std::string>& zones);

// People seen by each camera, per `bucket_s` window: frames answered, mean and max count.
struct PeopleBucket {
  double start_s = 0;
  size_t frames = 0;
  double mean = 0;
  int max = 0;
};
std::map<std::string, std::vector<PeopleBucket>> PeopleOverTime(
    const std::vector<Outcome>& outcomes, const std::string& model, double bucket_s,
    double duration_s);

// Vibration anomalies per sensor against the injected ground truth (p_fault > 0.5 = flagged).
struct AnomalyScore {
  size_t windows = 0, injected = 0, flagged = 0, caught = 0, false_alarms = 0;
};
std::map<std::string, AnomalyScore> Anomalies(const std::vector<Outcome>& outcomes);

// What a sink of insights (a subscriber, the MQTT broker) received, against what the clients
// saw answered. Per-request insights carry the request's trace id: a frame's people or face count
// and a window's alert (published when p_fault > 0.5) are matched to their request by it.
struct SinkSummary {
  size_t documents = 0;   // insight documents received (probes and duplicates included)
  size_t duplicates = 0;  // received again with an id already seen (MQTT QoS 1 allows them)
  size_t people = 0, faces = 0, alerts = 0, windows = 0;  // distinct, by kind
  // Insights of a request already counted (another id, the same trace and model): a hedged
  // request computed by two nodes publishes from both.
  size_t twice = 0;
  std::set<std::string> from;  // nodes that published them
  // Answered requests whose insight should have come and did not: frames counted by the people
  // or face detector, and windows whose answer showed p_fault > 0.5; by the node that served.
  std::map<std::string, size_t> missing;
  size_t missing_total() const;
};
SinkSummary Summarize(const std::vector<Outcome>& outcomes,
                      const std::vector<ReceivedInsight>& received);

// The outcomes with their results taken from the insights received instead of the answers: a
// frame's count from its insight (-1 if none came), a window's p_fault 1 if an alert came for it
// and 0 if not. The report's insight tables are built from these.
std::vector<Outcome> ResultsFromInsights(const std::vector<Outcome>& outcomes,
                                         const std::vector<ReceivedInsight>& received);

// 12345 -> "12,345".
std::string Thousands(size_t n);

}  // namespace hivemesh::demo
