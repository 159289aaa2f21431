#include "serving/expirer.h"

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
  const bool earliest = heap_.empty() || deadline < heap_.top().deadline;
  heap_.push(Entry{deadline, std::move(token), std::move(on_expire)});
  if (earliest) cv_.Signal();
}

void Expirer::Run() {
  mu_.Lock();
  while (!stop_) {
    if (heap_.empty()) {
      cv_.Wait(&mu_);
      continue;
    }
    const SteadyTime next = heap_.top().deadline;
    if (clock_.Now() < next) {
      clock_.WaitUntil(cv_, mu_, next);
      continue;
    }
    Entry e = heap_.top();
    heap_.pop();
    if (e.token.expired()) continue;
    mu_.Unlock();
    e.on_expire();
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace hivemesh
