#include "base/clock.h"

namespace hivemesh {

SystemClock& SystemClock::Get() {
  static SystemClock clock;
  return clock;
}

bool SystemClock::WaitUntil(absl::CondVar& cv, absl::Mutex& mu, SteadyTime deadline) const {
  const Nanos left = deadline - Now();
  if (left <= Nanos::zero()) return true;
  return cv.WaitWithTimeout(&mu, absl::FromChrono(left)) || Now() >= deadline;
}

bool ManualClock::WaitUntil(absl::CondVar& cv, absl::Mutex& mu, SteadyTime deadline) const {
  if (Now() >= deadline) return true;
  waiters_.fetch_add(1);
  cv.WaitWithTimeout(&mu, absl::Milliseconds(2));
  waiters_.fetch_sub(1);
  return Now() >= deadline;
}

}  // namespace hivemesh
