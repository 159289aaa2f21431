// InferenceObserver: what is told of every inference this node answers, whatever its protocol
// (routing::Dispatcher::Finish calls it): hivemesh_inference_requests_total and
// hivemesh_inference_request_duration_seconds (InferenceMetrics), and, at debug level, a log line
// with the same fields and the trace id; and the results this node computes, to the models'
// insight rules.
//
// Thread safety: Answered may be called from any thread.
#pragma once

#include <memory>

#include "routing/dispatcher.h"

namespace hivemesh {
namespace telemetry {
class Registry;
}
class InferenceMetrics;
class ModelInsights;

class InferenceObserver final : public routing::InferObserver {
 public:
  // `metrics` may be null (nothing is counted; answers are still logged), else the observer
  // declares its metrics in it.
  // `insights` may be null (no model publishes insights), else it outlives the observer.
  explicit InferenceObserver(telemetry::Registry* metrics, ModelInsights* insights = nullptr);
  ~InferenceObserver() override;

  void Answered(const routing::InferCall& call, int http_status, std::string_view served_by,
                double seconds) override;
  // Hands the result to the model's insight rules (api/model_insights.h).
  void Served(const routing::InferCall& call, const ModelRuntime& served,
              const InferResponse& response) override;

 private:
  const std::unique_ptr<InferenceMetrics> metrics_;  // null: not counted
  ModelInsights* const insights_;
};

}  // namespace hivemesh
