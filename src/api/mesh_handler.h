// MeshHandler: the node's view of the mesh, as JSON over HTTP.
//
//   GET /v1/mesh/members   every member: state, addresses, labels, capacity, models, load
//   GET /v1/mesh/stats     this node's gossip counters (packets, bytes, drops by reason)
//   GET /v1/mesh/routes    where this node's inferences went: local, forwarded, retried,
//                          rejected, and per peer attempts, failures and ejections
//
// Thread safety: Handle() may be called concurrently from any I/O thread.
#pragma once

#include "transport/http_server.h"

namespace hivemesh {

namespace membership {
class GossipNode;
}
namespace routing {
class Forwarder;
}

class MeshHandler {
 public:
  explicit MeshHandler(const membership::GossipNode* gossip,
                       const routing::Forwarder* forwarder = nullptr)
      : gossip_(gossip), forwarder_(forwarder) {}
  // True if the path belongs to this handler (and it has answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond);

 private:
  const membership::GossipNode* const gossip_;
  const routing::Forwarder* const forwarder_;
};

}  // namespace hivemesh
