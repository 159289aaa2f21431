#include "routing/outlier.h"

#include <algorithm>

namespace hivemesh::routing {

bool MayEject(int ejected, int total, const OutlierConfig& config) {
  const int allowed = std::max(
      1, static_cast<int>(static_cast<double>(total) * config.max_ejection_percent / 100.0));
  return ejected < allowed;
}

void OutlierState::OnSuccess(SteadyTime now) {
  (void)now;
  consecutive_ = 0;
  probation_ = false;
}

bool OutlierState::OnFailure(SteadyTime now, FailureKind kind, bool may_eject) {
  // A refused connection during a longer ejection (a probe) shortens nothing.
  if (Ejected(now)) return true;
  ++consecutive_;
  const bool eject =
      kind != FailureKind::kSoft || probation_ || consecutive_ >= config_.consecutive_failures;
  if (!eject || !may_eject) return false;
  Eject(now, kind);
  return true;
}

void OutlierState::Eject(SteadyTime now, FailureKind kind) {
  ++times_ejected_;
  std::chrono::milliseconds duration = config_.refused_ejection;
  if (kind != FailureKind::kRefused) {
    ++growing_;
    duration =
        std::min<std::chrono::milliseconds>(config_.max_ejection, config_.base_ejection * growing_);
  }
  ejected_until_ = now + duration;
  consecutive_ = 0;
  probation_ = true;
}

}  // namespace hivemesh::routing
