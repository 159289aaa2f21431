#include "api/inference_observer.h"

#include <spdlog/spdlog.h>

#include "api/metrics_handler.h"
#include "api/model_insights.h"
#include "telemetry/log.h"

namespace hivemesh {

InferenceObserver::InferenceObserver(telemetry::Registry* metrics, ModelInsights* insights)
    : metrics_(metrics != nullptr ? std::make_unique<InferenceMetrics>(*metrics) : nullptr),
      insights_(insights) {}

void InferenceObserver::Served(const routing::InferCall& call, const ModelRuntime& served,
                               const InferResponse& response) {
  if (insights_ != nullptr) insights_->Served(served, call.trace, response);
}

InferenceObserver::~InferenceObserver() = default;

void InferenceObserver::Answered(const routing::InferCall& call, int http_status,
                                 std::string_view served_by, double seconds) {
  const routing::InferenceRoute route = call.route.load();
  if (metrics_ != nullptr) metrics_->Record(call.model, call.known(), route, http_status, seconds);
  if (!spdlog::should_log(spdlog::level::debug)) return;
  telemetry::LogFields fields;
  fields.Add("model", call.model)
      .Add("route", routing::RouteName(route))
      .Add("status", int64_t{http_status})
      .Add("duration_ms", seconds * 1e3)
      .Add("trace_id", call.trace);
  // REST is the default a line does not name (docs/telemetry.md).
  if (call.protocol != routing::Protocol::kRest)
    fields.Add("protocol", routing::ProtocolName(call.protocol));
  if (!served_by.empty()) fields.Add("served_by", served_by);
  spdlog::debug("inference");
}

}  // namespace hivemesh
