// Expirer: one thread that calls each registered function at its time, so that a request stuck
// behind slow work is told "deadline exceeded" on time instead of when a worker frees up (the
// runtime), and a retry runs after its backoff (the forwarder).
//
// Time is `clock`'s: on a ManualClock an entry fires once the test advances the clock past its
// time. The runtimes that use an Expirer read the time from the same clock (clock()).
//
// Thread safety: Watch() may be called from any thread. Entries hold weak references, so a job
// that finished normally costs nothing but its heap slot until its deadline. `clock` must
// outlive the Expirer.
#pragma once

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"

namespace hivemesh {

class Expirer {
 public:
  explicit Expirer(Clock& clock = SystemClock::Get());
  ~Expirer();  // stops the thread; pending entries are dropped
  Expirer(const Expirer&) = delete;
  Expirer& operator=(const Expirer&) = delete;

  // At `deadline` (on clock()), calls `on_expire` if `token` is still alive. `on_expire` runs on
  // the expirer thread and must be quick.
  void Watch(SteadyTime deadline, std::weak_ptr<void> token, std::function<void()> on_expire);

  Clock& clock() const { return clock_; }

 private:
  struct Entry {
    SteadyTime deadline;
    std::weak_ptr<void> token;
    std::function<void()> on_expire;
    bool operator>(const Entry& o) const { return deadline > o.deadline; }
  };
  void Run();

  Clock& clock_;
  absl::Mutex mu_;
  std::vector<Entry> heap_ ABSL_GUARDED_BY(mu_);  // a min-heap by deadline (std::greater)
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar cv_;  // an earlier entry, or stopping
  std::thread thread_;
};

}  // namespace hivemesh
