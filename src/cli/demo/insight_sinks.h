// Where the demo's insights arrive, so that its report is built from what was received:
//
// - a subscriber on one node of the site: `hivemesh sub 'site/#' --output json` as a child
//   process, its lines to <work>/insights/subscriber.jsonl;
// - a mosquitto broker on loopback (when installed) that every node forwards its insights to
//   (--mqtt-url), and a consumer of it, `mosquitto_sub` with QoS 1 and a persistent session, its
//   lines to <work>/insights/broker.jsonl.
//
// Both are checked before the traffic starts: a probe insight published at every node must reach
// the subscriber (the subscription has spread by gossip), and a probe published to the broker
// must reach the consumer.
//
// Thread safety: none; the demo's main thread drives it. The destructor stops what it started.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::demo {

// One insight document as a sink received it.
struct ReceivedInsight {
  std::string id, topic, node, model, trace;
  int64_t time_ms = 0;
  std::string values;  // the JSON object
};

// The insight documents of a file of JSON lines, in order. Lines that are not insight documents
// (the probes) are left out and counted in `*other` if given.
std::vector<ReceivedInsight> ReadInsights(const std::string& path, size_t* other = nullptr);

// A number in an insight's values, or nullopt.
std::optional<double> ValueOf(const ReceivedInsight& insight, std::string_view key);

class InsightSinks {
 public:
  // `binary`: the hivemesh executable; `work_dir` must exist.
  InsightSinks(std::string binary, std::string work_dir);
  ~InsightSinks();
  InsightSinks(const InsightSinks&) = delete;
  InsightSinks& operator=(const InsightSinks&) = delete;

  // Starts mosquitto on a free loopback port and its consumer (of `filter`), and waits until a
  // probe goes through. The broker's URL, or FAILED_PRECONDITION when mosquitto or
  // mosquitto_sub is not installed.
  absl::StatusOr<std::string> StartBroker(const std::string& filter);
  // Starts `hivemesh sub <filter>` at `node_address` and publishes probes at every node of
  // `publishers` (name -> address) until one from each has arrived (`timeout`).
  absl::Status StartSubscriber(const std::string& node_address, const std::string& filter,
                               const std::map<std::string, std::string>& publishers,
                               std::chrono::seconds timeout);
  // Stops the subscriber, the consumer and the broker (in that order).
  void StopAll();

  bool broker_running() const { return broker_ > 0; }
  const std::string& subscriber_file() const { return subscriber_file_; }
  const std::string& broker_file() const { return broker_file_; }
  const std::string& log_dir() const { return dir_; }

 private:
  std::string binary_, dir_;
  std::string subscriber_file_, broker_file_;
  pid_t subscriber_ = -1, broker_ = -1, consumer_ = -1;
  int broker_port_ = 0;
};

}  // namespace hivemesh::demo
