// MqttBridge: the insights a node forwards to its MQTT broker (docs/insights.md,
// "Store-and-forward to the cloud over MQTT"), from its Outbox, with libmosquitto (MQTT v5,
// QoS 1).
//
// - Accept() appends an insight to the outbox (committed before it returns: the publisher's 202
//   comes after). A thread of the bridge sends the outbox's rows in their order, at most
//   max_in_flight unacknowledged at once, each with its id as the MQTT v5 user property
//   `hivemesh-id` (and in the document); a row is deleted when the broker's PUBACK for it comes.
// - While the broker is unreachable the rows wait (the outbox's bound and policy apply); the
//   client reconnects with a backoff (1 s doubling to 10 s). After a reconnect, sending starts
//   again at the oldest row not acknowledged, so each topic's insights reach the broker in order
//   (some twice, which the id lets a consumer drop: QoS 1 allows that anyway). A node restarted
//   during an outage finds its rows in the outbox and sends them once the broker is back.
// - A PUBACK with an error reason (the broker refuses the topic, say) drops the row, counted and
//   logged: a row the broker will never take must not stop the ones behind it.
//
// Thread safety: every member may be called from any thread. libmosquitto's callbacks run on its
// network thread and take the bridge's lock only briefly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bus/outbox.h"

namespace hivemesh::bus {

struct MqttOptions {
  std::string url;        // mqtt://host[:port] (1883) or mqtts://host[:port] (8883)
  std::string client_id;  // hivemesh-<node>
  std::string username;   // empty: none
  std::string password;
  std::string ca_file;  // mqtts: the CA bundle the broker's certificate is checked against
  // What goes to the broker (MQTT filters); empty: everything.
  std::vector<std::string> filters;
  int max_in_flight = 20;
  // Rows of the backlog (what waited when the connection was made) sent per second, behind the
  // live rows (bus/drain_order.h); 0: no limit.
  double backlog_rate = 1000;
  int keepalive_s = 30;
};

// host and port of an mqtt:// or mqtts:// URL, and whether it is TLS; INVALID_ARGUMENT naming
// what is wrong.
struct MqttAddress {
  std::string host;
  int port = 0;
  bool tls = false;
};
absl::StatusOr<MqttAddress> ParseMqttUrl(std::string_view url);

class MqttBridge {
 public:
  struct Stats {
    uint64_t accepted = 0;   // appended to the outbox
    uint64_t published = 0;  // acknowledged by the broker (rows deleted)
    uint64_t refused = 0;    // acknowledged with an error reason (rows dropped)
    uint64_t waiting = 0;    // rows in the outbox
    uint64_t waiting_bytes = 0;
    uint64_t dropped = 0;  // rows the outbox's bound dropped
    bool connected = false;
  };

  // Starts the bridge's thread and the client (which connects in the background: a broker that
  // is down now is no error). INVALID_ARGUMENT for a bad URL or filter.
  static absl::StatusOr<std::unique_ptr<MqttBridge>> Start(MqttOptions options,
                                                           std::unique_ptr<Outbox> outbox);
  ~MqttBridge();  // Stop()
  MqttBridge(const MqttBridge&) = delete;
  MqttBridge& operator=(const MqttBridge&) = delete;

  // Whether `topic` goes to the broker (the filters).
  bool Wants(std::string_view topic) const;
  // Appends the insight to the outbox (committed when this returns). The outbox's errors: a
  // full outbox with refuse-new or a full disk is RESOURCE_EXHAUSTED, other database errors
  // UNAVAILABLE.
  absl::Status Accept(std::string_view topic, std::string_view id, std::string_view document);
  Stats stats() const;
  // Disconnects and stops the thread; what waits stays in the outbox for the next start.
  void Stop();

  struct State;

 private:
  explicit MqttBridge(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace hivemesh::bus
