// Insights over REST (docs/insights.md), at this node's end of the bus (bus/local_bus.h):
//
//   POST /v1/insights/<topic>   body: a JSON object, the insight's values (CheckValues) ->
//        202 {"id", "topic", "seq"}; 400 naming what is wrong with the topic or the values
//   POST /v1/mesh/insights      (members only) body: a batch of the sender's own insights
//        (bus::DecodeBatch), from another node's MeshDelivery -> 200 {"insights", "delivered"},
//        each handed to this node's subscribers; 403 for anyone but a member, 400 naming the
//        first bad line (nothing is taken then), 413 over the batch limits
//   GET  /v1/insights/stream?topic=<filter>[&topic=<filter>...]  -> 200 text/event-stream,
//        each matching insight as `id: <id>\nevent: insight\ndata: <document>\n\n`, first a
//        comment line (`: subscribed to ...`); 400 for a bad filter, 503 when the node has its
//        maximum of subscribers
//
// The topic in the path and the filters in the query are percent-decoded (`%2F` is '/', `%23`
// is '#', which a URL cannot carry as it is; '+' stays '+', MQTT's wildcard). A subscriber that
// does not keep up loses insights once 256 KiB wait for it (counted as dropped by the bus) and
// is closed if a write waits longer than the server's body_timeout.
//
// Thread safety: Handle may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "transport/http_server.h"

namespace hivemesh {
namespace bus {
class LocalBus;
}

class InsightsHandler {
 public:
  // `wall_ms`: the Unix time in milliseconds, for the insights published here.
  InsightsHandler(std::shared_ptr<bus::LocalBus> bus, std::function<int64_t()> wall_ms);
  // True if the request was for /v1/insights (and was answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond) const;

 private:
  void Publish(const HttpRequest& request, std::string_view topic, HttpResponder& respond) const;
  void Receive(const HttpRequest& request, HttpResponder& respond) const;
  void Stream(const HttpRequest& request, HttpResponder& respond) const;

  const std::shared_ptr<bus::LocalBus> bus_;
  const std::function<int64_t()> wall_ms_;
};

}  // namespace hivemesh
