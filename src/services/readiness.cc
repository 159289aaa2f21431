#include "services/readiness.h"

#include <algorithm>

namespace hivemesh::services {

void Readiness::Observe(bool ok, SteadyTime now) {
  if (!ok) {
    passing_since_.reset();
    if (ready_ && ++failures_ >= threshold_) Leave(now);
    return;
  }
  failures_ = 0;
  if (!passing_since_) passing_since_ = now;
  if (!ready_ && now - *passing_since_ >= hold_) {
    ready_ = true;
    entered_ = now;
  }
}

void Readiness::Down(SteadyTime now) {
  passing_since_.reset();
  failures_ = 0;
  if (ready_) Leave(now);
}

void Readiness::Leave(SteadyTime now) {
  ready_ = false;
  failures_ = 0;
  if (left_before_ && now - entered_ < kFlapWindow) {
    hold_ = hold_ == Duration(0) ? 2 * period_ : std::min(kMaxHold, 2 * hold_);
  } else {
    hold_ = Duration(0);
  }
  left_before_ = true;
}

}  // namespace hivemesh::services
