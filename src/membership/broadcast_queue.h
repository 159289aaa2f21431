// BroadcastQueue: the updates a node waits to piggyback on its packets, one per key (a newer
// update about a node replaces the queued one). Taken fewest-transmits first, then larger, then
// newer (memberlist's TransmitLimitedQueue order); an update is dropped once it has been sent
// the retransmit limit (a load report: half of it, at least 2). Membership updates (priority 0) go
// before load reports (priority 1).
//
// Not thread-safe: owned by one Swim.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "membership/wire.h"

namespace hivemesh::membership {

struct Broadcast {
  std::string key;    // one queued update per key: a newer one replaces it
  int priority = 0;   // 0 membership, 1 load reports (sent only with room to spare)
  std::string bytes;  // encoded message (load reports are re-encoded with their age when sent)
  int transmits = 0;
  uint64_t id = 0;  // larger = newer
  std::optional<Load> load;
  SteadyTime held_since;
};

// Updates waiting to be piggybacked: fewest transmits first, then larger, then newer.
class BroadcastQueue {
 public:
  void Queue(std::string key, int priority, std::string bytes, std::optional<Load> load,
             SteadyTime now) {
    Remove(key);
    auto b = std::make_unique<Broadcast>();
    b->key = key;
    b->priority = priority;
    b->bytes = std::move(bytes);
    b->id = ++next_id_;
    b->load = std::move(load);
    b->held_since = now;
    order_.insert(b.get());
    by_key_[std::move(key)] = std::move(b);
  }

  bool Contains(const std::string& key) const { return by_key_.count(key) > 0; }
  void Remove(const std::string& key) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return;
    order_.erase(it->second.get());
    by_key_.erase(it);
  }
  size_t size() const { return by_key_.size(); }
  // True if a membership update (priority 0) is waiting: only those are worth a gossip round.
  bool HasMembershipUpdates() const { return !order_.empty() && (*order_.begin())->priority == 0; }

  // Takes updates that fit in `budget` bytes (each costs its size plus 2 framing bytes), load
  // reports only within `load_budget` of it.
  std::vector<std::string> Take(size_t budget, int limit, SteadyTime now,
                                size_t load_budget = SIZE_MAX) {
    std::vector<std::string> out;
    std::vector<Broadcast*> taken;
    int scanned = 0;
    for (Broadcast* b : order_) {
      if (budget < 8 || ++scanned > 128) break;
      std::string bytes = b->bytes;
      if (b->load) {
        Load l = *b->load;
        const auto held =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - b->held_since).count();
        l.age_ms = static_cast<uint32_t>(
            std::min<int64_t>(UINT32_MAX, l.age_ms + std::max<int64_t>(0, held)));
        bytes = EncodeMessage(l);
      }
      if (bytes.size() + 2 > budget) continue;
      if (b->priority > 0) {
        if (bytes.size() + 2 > load_budget) continue;
        load_budget -= bytes.size() + 2;
      }
      budget -= bytes.size() + 2;
      out.push_back(std::move(bytes));
      taken.push_back(b);
      if (out.size() >= kMaxCompoundMessages - 4) break;
    }
    for (Broadcast* b : taken) {
      order_.erase(b);
      // Load reports are freshness hints, refreshed anyway: half the membership limit.
      const int item_limit = b->priority > 0 ? std::max(2, limit / 2) : limit;
      if (++b->transmits >= item_limit) {
        by_key_.erase(b->key);
      } else {
        order_.insert(b);
      }
    }
    return out;
  }

 private:
  struct Order {
    bool operator()(const Broadcast* a, const Broadcast* b) const {
      if (a->priority != b->priority) return a->priority < b->priority;
      if (a->transmits != b->transmits) return a->transmits < b->transmits;
      if (a->bytes.size() != b->bytes.size()) return a->bytes.size() > b->bytes.size();
      return a->id > b->id;
    }
  };

  std::set<Broadcast*, Order> order_;
  std::unordered_map<std::string, std::unique_ptr<Broadcast>> by_key_;
  uint64_t next_id_ = 0;
};

}  // namespace hivemesh::membership
