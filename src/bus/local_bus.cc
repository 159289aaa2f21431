#include "bus/local_bus.h"

#include <set>
#include <utility>

#include "base/strings.h"
#include "bus/topic.h"

namespace hivemesh::bus {

LocalBus::LocalBus(std::string node, std::string zone, InsightIds ids, size_t max_subscribers)
    : node_(std::move(node)),
      zone_(std::move(zone)),
      max_subscribers_(max_subscribers),
      ids_(std::move(ids)) {}

uint64_t LocalBus::NextSeq(const std::string& topic) {
  auto it = sequences_.find(topic);
  if (it != sequences_.end()) {
    recent_.splice(recent_.begin(), recent_, it->second.at);
    return ++it->second.last;
  }
  if (sequences_.size() >= kMaxSequencedTopics) {
    sequences_.erase(recent_.back());
    recent_.pop_back();
  }
  recent_.push_front(topic);
  sequences_.emplace(topic, Sequence{1, recent_.begin()});
  return 1;
}

absl::StatusOr<Insight> LocalBus::Publish(std::string topic, std::string values, int64_t time_ms,
                                          std::string model, std::string version,
                                          std::string trace) {
  if (absl::Status s = CheckTopic(topic); !s.ok()) return s;
  if (absl::Status s = CheckValues(values); !s.ok()) return s;
  Insight in;
  in.topic = std::move(topic);
  in.values = std::move(values);
  in.node = node_;
  in.zone = zone_;
  in.model = std::move(model);
  in.version = std::move(version);
  in.trace = std::move(trace);
  in.time_ms = time_ms;
  // One publish at a time from its sequence number to its last observer: the store, the
  // subscribers and the other nodes each see a topic's insights in sequence order.
  absl::MutexLock order(&order_mu_);
  {
    absl::MutexLock lock(&mu_);
    in.id = ids_.Next();
    in.seq = NextSeq(in.topic);
  }
  std::string document;
  if (published_ || store_) document = Encode(in);
  if (store_) {
    if (absl::Status kept = store_(in, document); !kept.ok()) return kept;
  }
  {
    absl::MutexLock lock(&mu_);
    ++stats_.published;
  }
  DeliverEncoded(in, document.empty() ? nullptr : &document);
  if (published_) published_(in, document);
  return in;
}

void LocalBus::SetStore(Store store) { store_ = std::move(store); }

void LocalBus::SetObservers(Published published, std::function<void()> filters_changed) {
  published_ = std::move(published);
  filters_changed_ = std::move(filters_changed);
}

size_t LocalBus::Deliver(const Insight& insight) { return DeliverEncoded(insight, nullptr); }

size_t LocalBus::DeliverEncoded(const Insight& insight, const std::string* encoded) {
  std::vector<std::shared_ptr<Sink>> sinks;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, s] : subscribers_) {
      for (const std::string& filter : s.filters) {
        if (Matches(filter, insight.topic)) {
          sinks.push_back(s.sink);
          break;
        }
      }
    }
  }
  if (sinks.empty()) return 0;
  const std::string document = encoded != nullptr ? *encoded : Encode(insight);
  size_t took = 0;
  for (const std::shared_ptr<Sink>& sink : sinks) took += (*sink)(insight, document) ? 1 : 0;
  absl::MutexLock lock(&mu_);
  stats_.delivered += took;
  stats_.dropped += sinks.size() - took;
  return took;
}

absl::StatusOr<uint64_t> LocalBus::Subscribe(std::vector<std::string> filters, Sink sink) {
  if (filters.empty()) return absl::InvalidArgumentError("a subscription names a topic filter");
  if (filters.size() > kMaxFiltersPerSubscriber) {
    return absl::InvalidArgumentError(StrCat("a subscription has at most ",
                                             kMaxFiltersPerSubscriber, " topic filters; this one ",
                                             filters.size()));
  }
  for (const std::string& f : filters) {
    if (absl::Status s = CheckFilter(f); !s.ok()) return s;
  }
  uint64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    if (subscribers_.size() >= max_subscribers_) {
      return absl::ResourceExhaustedError(
          StrCat("this node has ", max_subscribers_, " subscribers already; try another node"));
    }
    id = next_subscriber_++;
    subscribers_.emplace(id,
                         Subscriber{std::move(filters), std::make_shared<Sink>(std::move(sink))});
  }
  if (filters_changed_) filters_changed_();
  return id;
}

void LocalBus::Unsubscribe(uint64_t id) {
  std::shared_ptr<Sink> sink;  // released after the lock: it may own a stream
  {
    absl::MutexLock lock(&mu_);
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) return;
    sink = std::move(it->second.sink);
    subscribers_.erase(it);
  }
  if (filters_changed_) filters_changed_();
}

std::vector<std::string> LocalBus::Filters() const {
  std::set<std::string> all;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, s] : subscribers_) all.insert(s.filters.begin(), s.filters.end());
  return {all.begin(), all.end()};
}

LocalBus::Stats LocalBus::stats() const {
  absl::MutexLock lock(&mu_);
  Stats s = stats_;
  s.subscribers = subscribers_.size();
  return s;
}

}  // namespace hivemesh::bus
