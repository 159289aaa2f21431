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
//   on them): every request there is for that Service, whatever its Host. What is not HTTP/1.x
//   there is relayed at connection level (PlanPassThrough), through a tunnel to the endpoint
//   node when it is not this one (AuthorizeTunnel at that node).
// - What reached no workload (a refused connection, a node's own 503) is tried at the next
//   endpoint, whatever its method; a GET or HEAD that failed on the way (reset) once more too.
//   With no endpoint left, or none ready (a replica restarting or moving), the request waits
//   for one (Options::hold_max, within its deadline: Hivemesh-Timeout-Ms). Retries spend from a
//   retry budget (routing/retry_budget.h: 20% of requests plus 10 a second). The answer's
//   status, Content-Type and body come back with `Hivemesh-Served-By: <node>`. 503 naming the
//   Service when it has no endpoint after the wait, 502 when the endpoint failed, 504 when the
//   deadline passed.
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

#include "absl/status/statusor.h"
#include "base/clock.h"
#include "serving/data_policy.h"
#include "transport/http_server.h"
#include "transport/relay.h"

namespace hivemesh {
class Expirer;
class PeerClient;

class ServiceProxy {
 public:
  struct Endpoint {
    std::string node;         // member name
    std::string api_address;  // its HTTP API, host:port
    bool ready = true;        // the replica there passes its readiness checks
    std::string zone;         // its `zone` label (empty: none)
    bool operator==(const Endpoint&) const = default;
  };
  struct Route {
    std::string service;
    uint16_t target_port = 0;  // its first port's (what a request by Host goes to)
    // Each of its ports and the workload's port it goes to, in the manifest's order (a target of
    // 0: a container port's name the workload does not have).
    std::vector<std::pair<uint16_t, uint16_t>> ports;
    // Where its requests may be served (hivemesh.io/data-policy): endpoints it rules out are
    // never sent anything, and with none left the answer says why.
    DataPolicy policy = DataPolicy::kMesh;
    std::vector<Endpoint> endpoints;  // best first
    bool operator==(const Route&) const = default;
  };
  // The route of the Service named `name` now, or nullopt if no Service has that name.
  using Resolve = std::function<std::optional<Route>(std::string_view name)>;

  struct Options {
    // How long a request waits for an endpoint when its Service has none ready (a replica
    // restarting, or moving to another node), or when every endpoint refused it before it
    // reached a workload; within the request's deadline.
    Nanos hold_max{std::chrono::seconds(10)};
    // The whole exchange's deadline when the client gives none (Hivemesh-Timeout-Ms).
    Nanos default_timeout{std::chrono::seconds(30)};
    // This node's `zone` label, for Services whose data policy is zone.
    std::string zone;
  };
  // `peers`: to other nodes (mesh links); `local`: plain HTTP to this node's workloads.
  ServiceProxy(std::string self, Resolve resolve, PeerClient* peers, PeerClient* local,
               Options options);
  ServiceProxy(std::string self, Resolve resolve, PeerClient* peers, PeerClient* local)
      : ServiceProxy(std::move(self), std::move(resolve), peers, local, Options{}) {}
  ~ServiceProxy();

  // Connection-level pass-through at the Service's own port (transport/relay.h): this node's
  // ready endpoint if it runs one, else the other ready endpoints in the balancer's order, each
  // asked for a tunnel (`credential(node)`: a member credential for it, or empty). Unavailable
  // when the Service is not applied or has no ready endpoint.
  // `port`: the Service's port the connection came in on (0: its first).
  absl::StatusOr<RelayPlan> PlanPassThrough(
      std::string_view name, const std::function<std::string(const std::string&)>& credential,
      uint16_t port = 0) const;
  // For HttpServerOptions::forward: streams the request (its head read) to an endpoint of the
  // Service `name` (or, with `name` empty, of the Service its Host names): this node's ready
  // replica, else the others in the balancer's order through tunnels (`credential` as for
  // PlanPassThrough). nullopt when the request is better read whole and handled by Handle or
  // Serve: it names no Service, came from a peer, asks for an Upgrade, gives a bad deadline, or
  // has no endpoint to go to now (Handle then waits for one, or says why).
  std::optional<ForwardPlan> PlanForward(
      std::string_view name, const HttpRequest& head,
      const std::function<std::string(const std::string&)>& credential, uint16_t port = 0) const;
  // For HttpServerOptions::authorize_tunnel, at an endpoint node, once the caller is known to be
  // a member: it wants a tunnel to the Service the request's target names (TunnelTarget):
  // the address of this node's ready replica, or why not.
  absl::StatusOr<std::string> AuthorizeTunnel(const HttpRequest& request) const;

  // True if the request's Host names a Service (and it was answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond) const;
  // Answers a request for the Service named `name`, whatever its Host: one that came in on the
  // Service's own port. 503 if no Service has that name now.
  // `port`: the Service's port it came in on (0: its first).
  void Serve(std::string_view name, const HttpRequest& request, HttpResponder respond,
             uint16_t port = 0) const;

 private:
  // What goes to an endpoint: the request's method, target, Host and content headers and body.
  struct Outgoing {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
  };
  // The route's endpoints its data policy allows from this node; `why` says what it ruled out.
  std::vector<Endpoint> Allowed(const Route& route, std::string* why) const;
  struct Exchange;
  // Answers `request` for the Service `name` routed by `route`.
  void Proxy(std::string_view name, Route route, const HttpRequest& request, HttpResponder& respond,
             uint16_t port) const;
  // Routes the exchange by its Service's route (`route`, or, if none is given, as it is now):
  // sends it, holds it, or refuses it.
  void Attempt(std::shared_ptr<Exchange> ex, std::optional<Route> route = std::nullopt) const;
  // Attempts it again a little later, if it may still wait; false if it may not.
  bool Hold(const std::shared_ptr<Exchange>& ex) const;
  // Sends it to the first of `left`; then on to the next, or held, as its failure allows.
  void Send(std::shared_ptr<Exchange> ex, uint16_t target_port, std::vector<Endpoint> left) const;

  std::string self_;
  Resolve resolve_;
  PeerClient* peers_;
  PeerClient* local_;
  const Options options_;
  // What the proxy has seen of each endpoint node (service_proxy.cc): the balancing state.
  class Balancer;
  std::unique_ptr<Balancer> balancer_;
  // Runs held exchanges' next attempts; last, so that it stops first.
  std::unique_ptr<Expirer> expirer_;
};

// The field a client gives a request's deadline in, in milliseconds: the time the mesh has to
// find an endpoint (holding it while none is ready), send it and bring the answer back (504
// after). Read at every node; each node tells the next what is left.
inline constexpr std::string_view kTimeoutField = "Hivemesh-Timeout-Ms";
// The Service's port a request forwarded to an endpoint node came in on (when not its first):
// a node's own field, taken only from members.
inline constexpr std::string_view kServicePortField = "Hivemesh-Service-Port";

// The path a tunnel to the Service `name` is asked for at ("/v1/services/<name>/tunnel").
// `port`: the Service's port (0: its first), as "?port=<n>".
std::string TunnelTarget(std::string_view name, uint16_t port = 0);

// The workload's port the Service's `port` goes to (0: its first port); 0 if it has no such
// port, or its target is unknown.
uint16_t TargetOf(const ServiceProxy::Route& route, uint16_t port);

// The Service name a Host header names ("name", "name:80", "name.hivemesh"), or empty.
std::string_view ServiceNameOfHost(std::string_view host);

}  // namespace hivemesh
