#include "membership/connection_limits.h"

#include <mutex>
#include <unordered_map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "base/strings.h"

namespace hivemesh::membership {

struct ConnectionLimits::Slot::State {
  State(size_t total, size_t per_source) : max_total(total), max_per_source(per_source) {}
  const size_t max_total;
  const size_t max_per_source;
  mutable std::mutex mu;
  size_t open ABSL_GUARDED_BY(mu) = 0;
  std::unordered_map<std::string, size_t> by_source ABSL_GUARDED_BY(mu);  // no zero entries
};

ConnectionLimits::Slot& ConnectionLimits::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
    source_ = std::move(other.source_);
  }
  return *this;
}

void ConnectionLimits::Slot::Release() {
  if (!state_) return;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    --state_->open;
    auto it = state_->by_source.find(source_);
    if (it != state_->by_source.end() && --it->second == 0) state_->by_source.erase(it);
  }
  state_.reset();
}

ConnectionLimits::ConnectionLimits(size_t max_total, size_t max_per_source)
    : state_(std::make_shared<Slot::State>(max_total, max_per_source)) {}

absl::StatusOr<ConnectionLimits::Slot> ConnectionLimits::Admit(std::string_view source,
                                                               DropReason* why) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->open >= state_->max_total) {
    if (why != nullptr) *why = DropReason::kConnectionLimit;
    return absl::ResourceExhaustedError(StrCat("the node has ", state_->open,
                                               " gossip connections open, its limit "
                                               "(gossip_max_connections)"));
  }
  auto it = state_->by_source.find(std::string(source));
  const size_t from_source = it == state_->by_source.end() ? 0 : it->second;
  if (from_source >= state_->max_per_source) {
    if (why != nullptr) *why = DropReason::kSourceConnectionLimit;
    return absl::ResourceExhaustedError(StrCat(source, " has ", from_source,
                                               " gossip connections open, the limit per source "
                                               "(gossip_max_connections_per_source)"));
  }
  ++state_->open;
  ++state_->by_source[std::string(source)];
  return Slot(state_, std::string(source));
}

size_t ConnectionLimits::open() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->open;
}

size_t ConnectionLimits::open_from(std::string_view source) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->by_source.find(std::string(source));
  return it == state_->by_source.end() ? 0 : it->second;
}

}  // namespace hivemesh::membership
