// Manifests (docs/services.md): the Kubernetes-style objects a team applies to the mesh, a
// subset of Kubernetes' own so the same files pass `kubectl apply --dry-run=client`:
//
//   apiVersion: v1, kind: Service          metadata.name, spec.selector, spec.ports[]
//                                          (protocol TCP, port, targetPort, name)
//   apiVersion: apps/v1, kind: Deployment  metadata.name, spec.replicas, spec.selector.matchLabels,
//                                          spec.template.metadata.labels, and of
//                                          spec.template.spec.containers[0]: image or
//                                          command/args, env[], ports[].containerPort,
//                                          readinessProbe.httpGet
//
// hivemesh's own settings are metadata.annotations under "hivemesh.io/" (kept as given here;
// read by placement and routing).
//
// ParseManifests is a pure kernel: YAML text in, objects out, or an error naming the document and
// the field ("Deployment web: spec.replicas: must be 0 to 100"). A field it does not know is
// left out and listed as a warning, never an error; a document of another kind is refused.
// Bounds: kMaxManifestBytes of text, kMaxDocuments documents, kMaxNestingDepth levels of
// nesting (checked before the YAML parser sees the text), names by the DNS label rule.
//
// Thread safety: every function may be called from any number of threads at once.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::services {

// Where a Service's requests (their raw data) may be served, as for models
// (serving/data_policy.h): local-only (the node the client reached), zone (nodes of its `zone`
// label), mesh (any; the default). Refused at apply if it is none of them.
inline constexpr std::string_view kDataPolicyAnnotation = "hivemesh.io/data-policy";

inline constexpr size_t kMaxManifestBytes = 1 << 20;
inline constexpr size_t kMaxDocuments = 64;
inline constexpr int kMaxNestingDepth = 32;
inline constexpr int kMaxReplicas = 100;

enum class Kind : uint8_t { kService, kDeployment };
std::string_view KindName(Kind kind);  // "Service", "Deployment"
// "Service"/"service"/"services"/"svc", "Deployment"/"deployment"/"deployments"/"deploy"/
// "workload"/"workloads": what a command line may say.
std::optional<Kind> ParseKind(std::string_view text);

using Labels = std::map<std::string, std::string>;

struct ServicePort {
  std::string name;  // optional
  uint16_t port = 0;
  // A number (the container port), or the name of a container port; empty: the same as port.
  std::string target_port;
  // Kubernetes' appProtocol: empty or "http" (any case): HTTP/1.1 is served as HTTP and other
  // protocols are relayed at connection level; anything else ("tcp", "kubernetes.io/h2c",
  // "grpc", ...): every connection is relayed at once (protocols whose server speaks first).
  std::string app_protocol;
  bool ConnectionLevel() const;
};

struct ServiceSpec {
  Labels selector;
  std::vector<ServicePort> ports;
};

struct HttpProbe {
  std::string path = "/";
  std::string port;  // a number or a container port's name
  int period_seconds = 2;
  int failure_threshold = 3;
};

struct ContainerPort {
  std::string name;  // optional
  uint16_t container_port = 0;
};

struct WorkloadSpec {
  int replicas = 1;
  Labels match_labels;
  Labels template_labels;
  std::string image;                 // a container image (podman), or
  std::vector<std::string> command;  // a program to run (with args)
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<ContainerPort> ports;
  std::optional<HttpProbe> readiness;
};

struct Manifest {
  Kind kind = Kind::kService;
  std::string name;
  Labels annotations;
  ServiceSpec service;    // kind Service
  WorkloadSpec workload;  // kind Deployment
  // The document as applied, in canonical YAML: what is kept and spread, and parsed again.
  std::string text;

  std::pair<Kind, std::string> key() const { return {kind, name}; }
};

struct Parsed {
  std::vector<Manifest> manifests;
  std::vector<std::string> warnings;  // "Service web: spec.clusterIP is not used by hivemesh"
};

// Every document of `yaml` (documents separated by "---"; empty ones skipped). INVALID_ARGUMENT
// naming the document (its kind and name, or its index) and the field.
absl::StatusOr<Parsed> ParseManifests(std::string_view yaml);

// Checks a metadata.name, a label key or value: the DNS label rule for names (1 to 63 of
// [a-z0-9-], starting and ending with a letter or digit); labels and annotations as Kubernetes
// allows them (keys up to 253 with an optional prefix/, values up to 63). `what` names the field.
absl::Status CheckName(std::string_view name, std::string_view what);
// The DNS label rule alone (CheckName without the message): cheap enough for every request.
bool IsName(std::string_view name);

}  // namespace hivemesh::services
