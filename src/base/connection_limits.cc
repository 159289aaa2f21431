#include "base/connection_limits.h"

#include <sys/resource.h>

#include <algorithm>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hivemesh {

struct ConnectionLimits::State {
  State(int total, int per_source) : max_total(total), max_per_source(per_source) {}
  const int max_total;
  const int max_per_source;
  absl::Mutex mu;
  int open ABSL_GUARDED_BY(mu) = 0;
  std::unordered_map<std::string, int> per_source ABSL_GUARDED_BY(mu);  // no zero entries
};

ConnectionLimits::Slot& ConnectionLimits::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
    key_ = std::move(other.key_);
  }
  return *this;
}

void ConnectionLimits::Slot::Release() {
  if (state_ == nullptr) return;
  {
    absl::MutexLock lock(&state_->mu);
    --state_->open;
    auto it = state_->per_source.find(key_);
    if (it != state_->per_source.end() && --it->second <= 0) state_->per_source.erase(it);
  }
  state_.reset();
}

ConnectionLimits::ConnectionLimits(int max_total, int max_per_source)
    : state_(std::make_shared<State>(max_total, max_per_source)) {}

std::optional<ConnectionLimits::Slot> ConnectionLimits::Admit(std::string_view source_key,
                                                              Rejection* refused) {
  std::string key(source_key);
  absl::MutexLock lock(&state_->mu);
  if (state_->open >= state_->max_total) {
    *refused = Rejection::kConnectionLimit;
    return std::nullopt;
  }
  int& from = state_->per_source[key];
  if (from >= state_->max_per_source) {
    *refused = Rejection::kSourceConnectionLimit;
    return std::nullopt;
  }
  ++from;
  ++state_->open;
  return Slot(state_, std::move(key));
}

int ConnectionLimits::max_total() const { return state_->max_total; }
int ConnectionLimits::max_per_source() const { return state_->max_per_source; }

int ConnectionLimits::open() const {
  absl::MutexLock lock(&state_->mu);
  return state_->open;
}

int ConnectionLimits::open_from(std::string_view source_key) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->per_source.find(std::string(source_key));
  return it == state_->per_source.end() ? 0 : it->second;
}

std::string SourceKey(std::string_view bytes) {
  static constexpr char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\xff', '\xff'};
  if (bytes.size() == 16 && bytes.substr(0, 12) == std::string_view(kMappedPrefix, 12)) {
    return std::string(bytes.substr(12));
  }
  return std::string(bytes.size() == 16 ? bytes.substr(0, 8) : bytes);
}

ConnectionLimitDefaults DefaultConnectionLimits(uint64_t nofile) {
  const int total = static_cast<int>(std::clamp<uint64_t>(nofile / 2, 1, 1024));
  return {total, std::clamp(total / 2, 1, 256)};
}

ConnectionLimitDefaults DefaultConnectionLimits() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return DefaultConnectionLimits(uint64_t{1} << 20);
  }
  return DefaultConnectionLimits(static_cast<uint64_t>(limit.rlim_cur));
}

}  // namespace hivemesh
