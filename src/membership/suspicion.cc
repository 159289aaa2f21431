#include "membership/suspicion.h"

#include <algorithm>
#include <cmath>

namespace hivemesh::membership {

Millis SuspicionTimeout(Millis min, Millis max, int confirmations, int k) {
  if (k <= 0) return min;
  const double frac = std::log(double(confirmations) + 1.0) / std::log(double(k) + 1.0);
  const double raw = double(max.count()) - frac * double(max.count() - min.count());
  return Millis(std::max(min.count(), static_cast<int64_t>(std::floor(raw))));
}

Suspicion::Suspicion(std::string_view accuser, int k, Millis min, Millis max, SteadyTime start)
    : start_(start), min_(min), max_(max), k_(std::max(0, k)) {
  accusers_.emplace_back(accuser);
}

bool Suspicion::Confirm(std::string_view from) {
  if (confirmations_ >= k_) return false;  // at the minimum already: nothing left to learn
  if (std::find(accusers_.begin(), accusers_.end(), from) != accusers_.end()) return false;
  accusers_.emplace_back(from);
  ++confirmations_;
  return true;
}

Nanos Suspicion::Remaining(SteadyTime now) const {
  const SteadyTime deadline = Deadline();
  return now >= deadline ? Nanos(0) : deadline - now;
}

}  // namespace hivemesh::membership
