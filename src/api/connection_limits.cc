#include "api/connection_limits.h"

#include <sys/resource.h>

#include <algorithm>

namespace hivemesh {

ConnectionLimits::Slot& ConnectionLimits::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    limits_ = other.limits_;
    key_ = std::move(other.key_);
    other.limits_ = nullptr;
  }
  return *this;
}

void ConnectionLimits::Slot::Release() {
  if (limits_ != nullptr) limits_->Release(key_);
  limits_ = nullptr;
}

std::optional<ConnectionLimits::Slot> ConnectionLimits::Admit(std::string_view source_key,
                                                              Rejection* refused) {
  std::string key(source_key);
  std::lock_guard<std::mutex> lock(mu_);
  if (open_ >= max_total_) {
    *refused = Rejection::kConnectionLimit;
    return std::nullopt;
  }
  int& from = per_source_[key];
  if (from >= max_per_source_) {
    *refused = Rejection::kSourceConnectionLimit;
    return std::nullopt;
  }
  ++from;
  ++open_;
  return Slot(this, std::move(key));
}

void ConnectionLimits::Release(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  --open_;
  auto it = per_source_.find(key);
  if (it != per_source_.end() && --it->second <= 0) per_source_.erase(it);
}

int ConnectionLimits::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

int ConnectionLimits::open_from(std::string_view source_key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = per_source_.find(std::string(source_key));
  return it == per_source_.end() ? 0 : it->second;
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
