#include "serving/expirer.h"

#include <algorithm>
#include <functional>

namespace hivemesh {

Expirer::Expirer(Clock& clock) : clock_(clock), thread_([this] { Run(); }) {}

Expirer::~Expirer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  thread_.join();
}

void Expirer::Watch(SteadyTime deadline, std::weak_ptr<void> token,
                    std::function<void()> on_expire) {
  absl::MutexLock lock(&mu_);
  const bool earliest = heap_.empty() || deadline < heap_.front().deadline;
  heap_.push_back(Entry{deadline, std::move(token), std::move(on_expire)});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  if (earliest) cv_.Signal();
}

void Expirer::Run() {
  mu_.Lock();
  while (!stop_) {
    if (heap_.empty()) {
      cv_.Wait(&mu_);
      continue;
    }
    const SteadyTime next = heap_.front().deadline;
    if (clock_.Now() < next) {
      clock_.WaitUntil(cv_, mu_, next);
      continue;
    }
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    Entry e = std::move(heap_.back());
    heap_.pop_back();
    if (e.token.expired()) continue;
    mu_.Unlock();
    e.on_expire();
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace hivemesh
