// Expirer: one thread that answers queued requests whose deadline has passed, so that a request
// stuck behind slow work is told "deadline exceeded" on time instead of when a worker frees up.
//
// Thread safety: Watch() may be called from any thread. Entries hold weak references, so a job
// that finished normally costs nothing but its heap slot until its deadline.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "base/clock.h"

namespace hivemesh {

class Expirer {
 public:
  Expirer();
  ~Expirer();  // stops the thread; pending entries are dropped
  Expirer(const Expirer&) = delete;
  Expirer& operator=(const Expirer&) = delete;

  // At `deadline` (steady clock), calls `on_expire` if `token` is still alive. `on_expire` runs on
  // the expirer thread and must be quick.
  void Watch(SteadyTime deadline, std::weak_ptr<void> token, std::function<void()> on_expire);

 private:
  struct Entry {
    SteadyTime deadline;
    std::weak_ptr<void> token;
    std::function<void()> on_expire;
    bool operator>(const Entry& o) const { return deadline > o.deadline; }
  };
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hivemesh
