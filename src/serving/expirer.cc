#include "serving/expirer.h"

namespace hivemesh {

Expirer::Expirer() : thread_([this] { Run(); }) {}

Expirer::~Expirer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Expirer::Watch(SteadyTime deadline, std::weak_ptr<void> token,
                    std::function<void()> on_expire) {
  bool earliest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    earliest = heap_.empty() || deadline < heap_.top().deadline;
    heap_.push(Entry{deadline, std::move(token), std::move(on_expire)});
  }
  if (earliest) cv_.notify_one();
}

void Expirer::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (heap_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const SteadyTime next = heap_.top().deadline;
    if (SystemClock::Get().Now() < next) {
      cv_.wait_until(lock, next);
      continue;
    }
    Entry e = heap_.top();
    heap_.pop();
    if (e.token.expired()) continue;
    lock.unlock();
    e.on_expire();
    lock.lock();
  }
}

}  // namespace hivemesh
