// ModelInsights: the insight rules of the models this node serves (serving/insight_rules.h) at
// work. Every result this node computes is read by its model version's rules, and what they
// publish goes on the bus (bus/local_bus.h) with the model, its version and the request's trace
// id; a thread closes the rules' windows on time, also for models that answered nothing in them.
//
// - The rules' state (last values, windows) is per model version; a version no longer served
//   is forgotten at the next tick (its open window with it).
// - A rule that cannot be read or published (an output missing from a result, a topic that uses
//   {zone} on a node without a zone) is an error: counted per model
//   (hivemesh_insights_rule_errors_total) and logged at most once a minute per model; the
//   request is answered all the same.
//
// Thread safety: Served may be called from any thread (the models' workers); it does not block
// beyond the bus's publish.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "serving/insight_rules.h"

namespace hivemesh {

class ModelRepository;
class ModelRuntime;
struct InferResponse;
namespace bus {
class LocalBus;
}

class ModelInsights {
 public:
  // `repository` must outlive this object.
  ModelInsights(std::shared_ptr<bus::LocalBus> bus, std::string node, std::string zone,
                const ModelRepository* repository);
  ~ModelInsights();  // Stop()
  // Stops the window thread (idempotent): windows close no more. Served still works.
  void Stop();
  ModelInsights(const ModelInsights&) = delete;
  ModelInsights& operator=(const ModelInsights&) = delete;

  // A result `served` computed for a request with trace id `trace` (may be empty).
  void Served(const ModelRuntime& served, std::string_view trace, const InferResponse& response);

  // Rule errors by model, since start.
  std::map<std::string, uint64_t> errors() const;

 private:
  struct Version {
    std::string model, version;
    std::vector<std::string> topics;  // per rule, filled in; empty: the rule cannot publish
    InsightRuleSet rules;
  };
  struct Pending {
    std::string topic, values, model, version;
    int64_t time_ms;
  };
  // The state of `rt`'s rules, made at first use.
  Version& StateOf(const ModelRuntime& rt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Collect(Version& v, std::vector<InsightFiring> fired, std::vector<Pending>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(std::vector<Pending> pending, std::string_view trace);
  void NoteErrors(const std::string& model, const std::vector<std::string>& errors);
  void WindowLoop();

  const std::shared_ptr<bus::LocalBus> bus_;
  const std::string node_, zone_;
  const ModelRepository* const repository_;

  mutable absl::Mutex mu_;
  std::map<std::string, Version> versions_ ABSL_GUARDED_BY(mu_);  // by "model/version"
  struct Errors {
    uint64_t count = 0;
    SteadyTime logged{};
    bool ever_logged = false;
  };
  std::map<std::string, Errors> errors_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar cv_;
  std::thread thread_;
};

}  // namespace hivemesh
