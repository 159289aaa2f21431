// InferenceObserver: what is told of every inference this node answers, whatever its protocol
// (routing::Dispatcher::Finish calls it): hivemesh_inference_requests_total and
// hivemesh_inference_request_duration_seconds (InferenceMetrics), and, at debug level, a log line
// with the same fields and the trace id.
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

class InferenceObserver final : public routing::InferObserver {
 public:
  // `metrics` may be null (nothing is counted; answers are still logged), else the observer
  // declares its metrics in it.
  explicit InferenceObserver(telemetry::Registry* metrics);
  ~InferenceObserver() override;

  void Answered(const routing::InferCall& call, int http_status, std::string_view served_by,
                double seconds) override;

 private:
  const std::unique_ptr<InferenceMetrics> metrics_;  // null: not counted
};

}  // namespace hivemesh
