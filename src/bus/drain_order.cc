#include "bus/drain_order.h"

#include <algorithm>
#include <cmath>

namespace hivemesh::bus {

void DrainOrder::Reset(uint64_t backlog_end,
                       std::optional<std::map<std::string, uint64_t>> last_in_backlog) {
  backlog_end_ = backlog_end;
  live_after_ = backlog_end;
  backlog_after_ = 0;
  held_.clear();
  all_held_ = !last_in_backlog || last_in_backlog->size() > kMaxBacklogTopics;
  if (!all_held_) held_.insert(last_in_backlog->begin(), last_in_backlog->end());
}

bool DrainOrder::Live(uint64_t seq, std::string_view topic) {
  live_after_ = seq;
  auto it = held_.find(topic);
  if (it == held_.end()) return true;
  if (it->second <= backlog_after_) {
    // The backlog cursor is past the topic's last held row (it was dropped before it went).
    held_.erase(it);
    return true;
  }
  it->second = seq;
  return false;
}

DrainOrder::Backlog DrainOrder::Next(uint64_t seq, std::string_view topic) {
  if (all_held_) {
    // Plain order: every row goes through here. Once the backlog has gone, the live cursor
    // takes over from here.
    backlog_after_ = seq;
    if (backlog_after_ >= backlog_end_) {
      all_held_ = false;
      live_after_ = backlog_after_;
    }
    return Backlog::kSend;
  }
  if (seq > backlog_end_ && seq > live_after_) return Backlog::kStop;
  backlog_after_ = seq;
  auto it = held_.find(topic);
  if (seq <= backlog_end_) {
    if (it != held_.end() && it->second == seq) held_.erase(it);
    return Backlog::kSend;
  }
  // Past the backlog: a row the live cursor deferred, or one it sent.
  if (it == held_.end() || seq > it->second) return Backlog::kSkip;
  if (it->second == seq) held_.erase(it);
  return Backlog::kSend;
}

void DrainOrder::CaughtUp() {
  if (all_held_) return;  // the backlog cursor is the only one: nothing is behind it
  backlog_after_ = std::max({backlog_after_, live_after_, backlog_end_});
  held_.clear();
}

void Pace::Refill(int64_t now_ns) {
  const double burst = std::max(1.0, rate_ / 10);
  if (refilled_ns_ < 0) {
    tokens_ = burst;
  } else if (now_ns > refilled_ns_) {
    tokens_ = std::min(burst, tokens_ + rate_ * static_cast<double>(now_ns - refilled_ns_) / 1e9);
  }
  refilled_ns_ = std::max(refilled_ns_, now_ns);
}

size_t Pace::Take(size_t want, int64_t now_ns) {
  if (rate_ <= 0) return want;
  Refill(now_ns);
  const size_t n = std::min(want, static_cast<size_t>(std::floor(tokens_)));
  tokens_ -= static_cast<double>(n);
  return n;
}

int64_t Pace::Wait(int64_t now_ns) {
  if (rate_ <= 0) return 0;
  Refill(now_ns);
  if (tokens_ >= 1) return 0;
  return static_cast<int64_t>(std::ceil((1 - tokens_) / rate_ * 1e9));
}

}  // namespace hivemesh::bus
