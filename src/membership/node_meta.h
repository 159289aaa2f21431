// What a node tells the mesh about itself: metadata (carried in its alive messages, so it changes
// with its incarnation) and load reports (gossiped separately, refreshed every probe interval).
// Both use the compact membership encoding (byte_codec.h) and are bounded by the wire limits.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace hivemesh::membership {

struct ModelAdvert {
  std::string name;
  std::vector<std::string> versions;
  bool ready = false;
  uint8_t data_policy =
      0;  // the model's DataPolicy (serving/model_config.h): 0 mesh, 1 zone, 2 local
  uint32_t instances = 1;  // workers serving it (queue depth / instances ~ service times ahead)
};

struct NodeMeta {
  std::string api_address;                    // host:port of the node's KServe v2 REST API
  std::map<std::string, std::string> labels;  // e.g. zone, hardware
  uint32_t cores = 0;
  uint64_t memory_mb = 0;
  uint32_t accelerators = 0;
  std::vector<ModelAdvert> models;
  bool draining = false;  // finishing its work before leaving: send it nothing new
  bool insecure = false;  // runs with --insecure: no certificate, no mutual TLS (docs/identity.md)
  // An issuer's count of the keys it has revoked: a node that sees it grow fetches the signed
  // list from it (docs/identity.md). 0 for other nodes.
  uint64_t revocations = 0;
  // The version of the mesh's authorization policy the node holds: a node that sees a newer one
  // fetches it from it (api/mesh_policy.h). 0: none.
  uint64_t policy = 0;
  // How many roots the node trusts (its trust bundle, docs/identity.md): during a root
  // rotation, a node that sees a member trust more renews at once to get the new bundle, and
  // the issuer finishes the rotation once every member trusts them all. 0 or 1: left out.
  uint64_t roots = 0;
  // The version of the mesh's gossip keys the node holds (identity/mesh_files.h): a node that
  // sees a newer one fetches the keys from it over mutual TLS, and an issuer takes the next step
  // of a key rotation once every member holds the last. 0: left out.
  uint64_t gossip_keys = 0;
  // How many issuer certificates of the mesh the node knows (docs/identity.md, "More than one
  // issuer"): a node that sees a member know more fetches them from it. 0 or 1: left out.
  uint64_t issuers = 0;
  // The first 8 bytes of the digest of the objects applied to the mesh that the node holds
  // (services/object_service.h): a node that sees another value compares indexes with it and
  // pulls what it lacks (docs/services.md). 0: none, left out.
  uint64_t objects = 0;
  // The workloads the node runs that are ready (services/readiness.h), sorted: the other nodes
  // route a Service's requests only to nodes that announce its workload here. At most
  // kMaxReadyWorkloads names, each a DNS label; empty: left out.
  std::vector<std::string> ready_workloads;
  // The filters of the node's insight subscribers (docs/insights.md, "The bus"), deduplicated:
  // the other nodes send it the insights that match one of them. At most kMaxInsightFilters,
  // each at most kMaxInsightFilterBytes; a node whose filters do not fit announces "#" and
  // filters what arrives itself. Empty: left out.
  std::vector<std::string> insight_filters;
  // The node's software release (`hivemesh --version`, e.g. "0.1.0"): `hivemesh members` shows
  // it, so an operator sees where a rolling upgrade is. Empty: not said (a node of before it).
  std::string software_version;
};
inline constexpr size_t kMaxReadyWorkloads = 64;
inline constexpr size_t kMaxSoftwareVersionBytes = 64;
inline constexpr size_t kMaxInsightFilters = 64;
inline constexpr size_t kMaxInsightFilterBytes = 512;  // a topic's limit (bus/topic.h)

// Fails if the encoding exceeds kMaxMetaBytes (too many models or labels for one alive message).
//
// Between releases: after the positional fields comes an extension area of tagged fields,
// [tag: varint] [length: varint] [bytes], in which a decoder skips tags it does not know. New
// fields go there, so a node reads the metadata of the release after its own (docs/deploy.md,
// "Upgrades").
absl::StatusOr<std::string> EncodeNodeMeta(const NodeMeta& meta);
absl::StatusOr<NodeMeta> DecodeNodeMeta(std::string_view bytes);

struct ModelLoad {
  std::string name;
  uint32_t queue_depth = 0;
  uint32_t in_flight = 0;
  uint32_t ewma_service_us = 0;  // exponentially weighted mean of the model's service time
};

struct LoadReport {
  std::vector<ModelLoad> models;
  // The node's control versions, as in its metadata (NodeMeta revocations, policy, roots,
  // gossip_keys, issuers, objects): load
  // reports are re-gossiped every probe interval, so a node that missed the metadata change (a
  // broadcast reaches most members at once, not all) learns it within seconds. Optional trailing
  // fields, left out when all are 0.
  uint64_t revocations = 0;
  uint64_t policy = 0;
  uint64_t roots = 0;
  uint64_t gossip_keys = 0;
  uint64_t issuers = 0;
  uint64_t objects = 0;
};

// Models beyond what fits kMaxLoadBytes are left out (the first ones are kept). After the
// trailing fields comes an extension area like the metadata's, skipped by this release.
std::string EncodeLoadReport(const LoadReport& report);
absl::StatusOr<LoadReport> DecodeLoadReport(std::string_view bytes);

}  // namespace hivemesh::membership
