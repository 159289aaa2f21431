#include "routing/retry_budget.h"

#include <algorithm>
#include <cmath>

namespace hivemesh::routing {

void RetryBudget::Expire(SteadyTime now) {
  while (!requests_.empty() && now - requests_.front() >= config_.window) requests_.pop_front();
  while (!retries_.empty() && now - retries_.front() >= config_.window) retries_.pop_front();
}

void RetryBudget::Deposit(SteadyTime now) {
  Expire(now);
  requests_.push_back(now);
}

bool RetryBudget::TryWithdraw(SteadyTime now) {
  Expire(now);
  const double window_s = std::chrono::duration<double>(config_.window).count();
  const double allowed =
      config_.ratio * static_cast<double>(requests_.size()) + config_.min_per_second * window_s;
  if (static_cast<double>(retries_.size()) + 1.0 > allowed) return false;
  retries_.push_back(now);
  return true;
}

Nanos FullJitterBackoff(int attempt, Nanos base, Nanos cap, double unit) {
  const double ceiling =
      std::min(static_cast<double>(cap.count()),
               static_cast<double>(base.count()) * std::pow(2.0, std::clamp(attempt, 0, 30)));
  return Nanos(static_cast<int64_t>(std::clamp(unit, 0.0, 1.0) * ceiling));
}

}  // namespace hivemesh::routing
