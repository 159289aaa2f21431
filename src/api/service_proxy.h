// Services reached by name (docs/services.md, "Routing to services"): a request whose Host is a
// Service's name ("edge-camera-ai", "edge-camera-ai.hivemesh", with or without a port) on any
// node's HTTP port goes to one of the Service's endpoints, wherever it runs.
//
// - The endpoints are the nodes that run a workload the Service selects (its selector matches
//   the workload's template labels), as placement puts them (services/placement.h: every node
//   computes the same), at the Service's targetPort on that node (a number, or the name of a
//   container port). Only ready ones get requests (services/readiness.h; each node announces
//   its ready workloads).
// - This node runs one: the request goes to 127.0.0.1:<targetPort> (plain HTTP/1.1, kept
//   alive). Otherwise it goes to an endpoint node over its mesh link (mutual TLS in a secure
//   mesh), which sends it on to its own workload; a request that came from a peer is never
//   forwarded again (503 if its node no longer runs the workload).
// - Which endpoint: this node's, when it runs a ready one; otherwise the power of two choices
//   among the other ready endpoints on peak-EWMA latency x (requests pending + 1) as this node
//   saw them, skipping endpoints ejected for failing on the way (routing/outlier.h: a refused
//   connection for a second, resets and five failures in a row for longer), unless all are.
// - A node also listens on each Service's `port` (the agent opens the listeners, Serve answers
//   on them): every request there is for that Service, whatever its Host.
// - A GET or HEAD that fails on the way (connection refused or reset) is tried once at another
//   endpoint. The answer's status, Content-Type and body come back with `Hivemesh-Served-By:
//   <node>`. 503 naming the Service when it has no endpoint, 502 when the endpoint failed.
//
// Header fields go end to end both ways, but for the connection's own (Connection, Keep-Alive,
// TE, Upgrade ...), the message's framing (Content-Length, Transfer-Encoding) and hivemesh's
// own (a client's Hivemesh-* fields never reach a node or a workload). Today: requests and
// answers are buffered whole (bounded by the server's body limit), and of repeated answer
// fields only the last is kept.
//
// Thread safety: Handle and Serve may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "transport/http_server.h"

namespace hivemesh {
class PeerClient;

class ServiceProxy {
 public:
  struct Endpoint {
    std::string node;         // member name
    std::string api_address;  // its HTTP API, host:port
    bool ready = true;        // the replica there passes its readiness checks
    bool operator==(const Endpoint&) const = default;
  };
  struct Route {
    std::string service;
    uint16_t target_port = 0;
    std::vector<Endpoint> endpoints;  // best first
    bool operator==(const Route&) const = default;
  };
  // The route of the Service named `name` now, or nullopt if no Service has that name.
  using Resolve = std::function<std::optional<Route>(std::string_view name)>;

  // `peers`: to other nodes (mesh links); `local`: plain HTTP to this node's workloads.
  ServiceProxy(std::string self, Resolve resolve, PeerClient* peers, PeerClient* local);
  ~ServiceProxy();

  // True if the request's Host names a Service (and it was answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond) const;
  // Answers a request for the Service named `name`, whatever its Host: one that came in on the
  // Service's own port. 503 if no Service has that name now.
  void Serve(std::string_view name, const HttpRequest& request, HttpResponder respond) const;

 private:
  // What goes to an endpoint: the request's method, target, Host and content headers and body.
  struct Outgoing {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
  };
  // Answers `request` for the Service `name` routed by `route`.
  void Proxy(std::string_view name, const Route& route, const HttpRequest& request,
             HttpResponder& respond) const;
  // Sends `out` to the first of `left`; on a failure on the way, to the next once if
  // `may_retry`.
  void Send(std::shared_ptr<const Outgoing> out, const Route& route, std::vector<Endpoint> left,
            bool may_retry, HttpResponder respond) const;

  std::string self_;
  Resolve resolve_;
  PeerClient* peers_;
  PeerClient* local_;
  // What the proxy has seen of each endpoint node (service_proxy.cc): the balancing state.
  class Balancer;
  std::unique_ptr<Balancer> balancer_;
};

// The Service name a Host header names ("name", "name:80", "name.hivemesh"), or empty.
std::string_view ServiceNameOfHost(std::string_view host);

}  // namespace hivemesh
