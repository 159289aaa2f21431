// A test backend on manual time: the identity model (each input back as its output) whose
// executions advance a ManualClock by a simulated compute time, and can be held at a gate, so
// that a test decides when a worker is busy and for how long on the runtime's clock, instead of
// sleeping.
//
// Thread safety: SimControl is shared by the test thread and the runtime's workers.
#pragma once

#include <chrono>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "serving/backend.h"
#include "serving/backends/identity/identity_backend.h"

namespace hivemesh::test {

class SimControl {
 public:
  explicit SimControl(ManualClock& clock) : clock_(clock) {}

  // Each execution advances the clock by this much (default none).
  void set_compute(Nanos compute) {
    absl::MutexLock lock(&mu_);
    compute_ = compute;
  }
  // While closed, executions wait at the gate (they have started: started() counts them).
  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  int started() const {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  // Waits (real time, at most `limit`) until `n` executions have started; true if they have.
  bool AwaitStarted(int n, absl::Duration limit = absl::Seconds(30)) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return started_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), limit);
  }

  // Called by the backend at the start of each execution.
  void Execute() {
    Nanos compute;
    {
      absl::MutexLock lock(&mu_);
      ++started_;
      mu_.Await(absl::Condition(&open_));
      compute = compute_;
    }
    clock_.Advance(compute);
  }

 private:
  ManualClock& clock_;
  mutable absl::Mutex mu_;
  Nanos compute_ ABSL_GUARDED_BY(mu_){0};
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int started_ ABSL_GUARDED_BY(mu_) = 0;
};

// Registers backend "sim": identity, with `control` run at the start of each execution.
// `control` must outlive every backend made.
inline void RegisterSimBackend(BackendRegistry& registry, SimControl* control) {
  auto identity = std::make_shared<BackendRegistry>();
  RegisterIdentityBackend(*identity);
  registry.Register(
      "sim",
      [identity, control](const BackendContext& ctx) -> absl::StatusOr<std::unique_ptr<Backend>> {
        class Sim final : public Backend {
         public:
          Sim(std::unique_ptr<Backend> inner, SimControl* control)
              : inner_(std::move(inner)), control_(control) {}
          absl::Status Execute(std::span<const Tensor> inputs,
                               std::vector<Tensor>* outputs) override {
            control_->Execute();
            return inner_->Execute(inputs, outputs);
          }

         private:
          std::unique_ptr<Backend> inner_;
          SimControl* const control_;
        };
        absl::StatusOr<std::unique_ptr<Backend>> inner = (*identity->Find("identity"))(ctx);
        if (!inner.ok()) return inner.status();
        return std::make_unique<Sim>(std::move(*inner), control);
      });
}

}  // namespace hivemesh::test
