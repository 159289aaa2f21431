// The insight (docs/insights.md, "The insight"): a small JSON document that says what a model, a
// workload or a client concluded, its id and per-topic sequence, and its wire form.
//
// - Encode writes the document; Decode reads one back from a peer or the outbox and checks every
//   field (a peer's bytes are as untrusted as a client's): the topic by bus/topic.h, the id's
//   form, names (node, zone, model, version) as printable text of at most 128 bytes, the trace
//   id as 32 lower-case hex digits or empty, and `values` as a JSON object. A document is at most
//   kMaxInsightBytes; CheckValues bounds a client's object to what fits.
// - InsightIds makes a node's ids: "<node>.<boot, hex>.<counter, 12 digits>", unique in the
//   mesh for ever as long as node names are (a node restarted in the same second as its last boot
//   takes the next second, see the constructor), and increasing within one boot.
//
// Pure: no I/O, no clock (times are handed in). Thread safety: Encode, Decode and CheckValues
// may be called from any thread; an InsightIds is not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hivemesh::bus {

// The largest insight document, and the largest name field in it.
inline constexpr size_t kMaxInsightBytes = 16 * 1024;
inline constexpr size_t kMaxNameBytes = 128;

struct Insight {
  std::string id;
  std::string topic;
  std::string node, zone, model, version;  // zone, model and version may be empty
  int64_t time_ms = 0;                     // Unix time, milliseconds
  uint64_t seq = 0;                        // per (node, topic), from 1
  std::string trace;                       // the W3C trace id of the request, or empty
  std::string values;                      // a JSON object, as written
};

// `values` is a JSON object no larger than leaves room for the rest of an insight
// (kMaxInsightBytes - 2 KiB): OK, or INVALID_ARGUMENT saying what it is not.
absl::Status CheckValues(std::string_view values);

// The document: {"id":..,"topic":..,"node":..,"zone":..,"model":..,"version":..,"time":..,
// "time_ms":..,"seq":..,"trace":..,"values":{..}}; time is RFC 3339 in UTC with milliseconds.
// REQUIRES: the fields are valid (as Decode would accept them).
std::string Encode(const Insight& insight);

// An insight from its document: INVALID_ARGUMENT naming the first field that is wrong.
absl::StatusOr<Insight> Decode(std::string_view document);

// A batch of insights between nodes (bus/mesh_delivery.h): documents one per line, each ended
// by '\n' (a document has no raw newline: JSON escapes it in strings). At most kMaxBatchInsights
// documents and kMaxBatchBytes.
inline constexpr size_t kMaxBatchInsights = 4096;
inline constexpr size_t kMaxBatchBytes = 4 * 1024 * 1024;
// Appends `document` to `batch`.
void AppendToBatch(std::string& batch, std::string_view document);
// The insights of a batch sent by member `sender`: each must Decode and be the sender's own
// (node == sender: a member relays no other node's insights). INVALID_ARGUMENT naming the
// first line that is wrong, or OUT_OF_RANGE for a batch over the limits; nothing is taken then.
absl::StatusOr<std::vector<Insight>> DecodeBatch(std::string_view batch, std::string_view sender);

class InsightIds {
 public:
  // `boot_s` is the Unix second the node started; `last_boot_s` the one it recorded the last
  // time it started (0 if none): a boot in the same second as (or, with a clock set back, before)
  // the last one takes the second after it, so its ids are new too.
  InsightIds(std::string node, int64_t boot_s, int64_t last_boot_s = 0);
  // The boot second the ids use (to be recorded for the next start).
  int64_t boot_s() const { return boot_s_; }
  std::string Next();

 private:
  std::string prefix_;
  int64_t boot_s_;
  uint64_t counter_ = 0;
};

}  // namespace hivemesh::bus
