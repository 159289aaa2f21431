// LocalBus: the node's own end of the insight bus (docs/insights.md, "The bus"): it makes the
// insights published at this node (ids, per-topic sequence numbers) and hands every insight,
// made here or received, to this node's subscribers whose filters match.
//
// - A subscriber is a set of filters (bus/topic.h; at most kMaxFiltersPerSubscriber) and a sink.
//   The sink must not block: it takes the insight (true) or refuses it (false: its queue is
//   full), which counts as dropped for that subscriber. At most `max_subscribers` at once:
//   RESOURCE_EXHAUSTED beyond.
// - Sequence numbers count per topic from 1. At most kMaxSequencedTopics topics are remembered;
//   past that the least recently published is forgotten, and its next insight starts again at 1
//   (a consumer sees a restart, as after the node's own restart).
// - Filters() is the deduplicated set of every subscriber's filters, for the node's gossip
//   metadata.
//
// Thread safety: every member may be called from any thread; sinks are called without the bus's
// lock held, in the order insights were delivered per calling thread. Publishes are serialized
// from the sequence number to the last observer (the store, the sinks, `published`), so each of
// them sees every topic in sequence order; those must not block, nor publish.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bus/insight.h"

namespace hivemesh::bus {

inline constexpr size_t kMaxFiltersPerSubscriber = 16;
inline constexpr size_t kMaxSequencedTopics = 10000;

class LocalBus {
 public:
  // The insight and its document (Encode(insight)): false if the subscriber cannot take it now.
  using Sink = std::function<bool(const Insight& insight, const std::string& document)>;

  struct Stats {
    uint64_t published = 0;  // made here
    uint64_t delivered = 0;  // handed to a subscriber that took it
    uint64_t dropped = 0;    // refused by a subscriber's sink (its queue was full)
    size_t subscribers = 0;
  };

  // `ids` makes the ids of insights published here; `zone` names this node's zone (may be "").
  LocalBus(std::string node, std::string zone, InsightIds ids, size_t max_subscribers = 128);

  // The insight published here now (`time_ms`), its id and sequence number given: the topic
  // and values must pass CheckTopic and CheckValues (INVALID_ARGUMENT otherwise). It is
  // delivered to this node's subscribers before Publish returns.
  absl::StatusOr<Insight> Publish(std::string topic, std::string values, int64_t time_ms,
                                  std::string model = "", std::string version = "",
                                  std::string trace = "");
  // Hands an insight (made here or received from a peer) to the subscribers whose filters match
  // its topic; how many took it.
  size_t Deliver(const Insight& insight);

  // Told of every insight published here, after this node's subscribers (its document given):
  // the delivery to other nodes. Told, without the bus's lock, after a subscription came or
  // went: the node's announced filters. Set before the bus is used; either may be null.
  using Published = std::function<void(const Insight& insight, const std::string& document)>;
  void SetObservers(Published published, std::function<void()> filters_changed);
  // Asked to keep every insight published here before anyone is told of it (the outbox for the
  // MQTT broker): an error is Publish's, and the insight goes nowhere (its sequence number is
  // spent: a consumer sees a gap). Set before the bus is used; may be null.
  using Store = std::function<absl::Status(const Insight& insight, const std::string& document)>;
  void SetStore(Store store);

  absl::StatusOr<uint64_t> Subscribe(std::vector<std::string> filters, Sink sink);
  void Unsubscribe(uint64_t id);
  std::vector<std::string> Filters() const;
  Stats stats() const;

 private:
  struct Subscriber {
    std::vector<std::string> filters;
    std::shared_ptr<Sink> sink;
  };
  uint64_t NextSeq(const std::string& topic) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deliver, with the document made once (or not at all when no subscriber wants it).
  size_t DeliverEncoded(const Insight& insight, const std::string* document);

  Published published_;
  std::function<void()> filters_changed_;
  Store store_;

  const std::string node_, zone_;
  const size_t max_subscribers_;
  // Held by Publish from an insight's sequence number to its last observer (never by Deliver).
  absl::Mutex order_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  InsightIds ids_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_subscriber_ ABSL_GUARDED_BY(mu_) = 1;
  // Per topic: the last sequence number and where the topic is in `recent_` (most recent first).
  struct Sequence {
    uint64_t last = 0;
    std::list<std::string>::iterator at;
  };
  std::unordered_map<std::string, Sequence> sequences_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> recent_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hivemesh::bus
