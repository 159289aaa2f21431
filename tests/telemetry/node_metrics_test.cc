// The node's metric declarations (api/metrics_handler.h): outcome and route names, the request
// counter and histogram, and the serving collectors over a real model repository, as text.
#include "api/metrics_handler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>

#include "serving/backend.h"
#include "serving/model_repository.h"
#include "support/agent_process.h"
#include "telemetry/promtool.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(NodeMetricsTest, OutcomesAndRoutes) {
  EXPECT_EQ(OutcomeFor(200), "success");
  EXPECT_EQ(OutcomeFor(400), "client_error");
  EXPECT_EQ(OutcomeFor(403), "client_error");
  EXPECT_EQ(OutcomeFor(404), "client_error");
  EXPECT_EQ(OutcomeFor(413), "client_error");
  EXPECT_EQ(OutcomeFor(503), "unavailable");
  EXPECT_EQ(OutcomeFor(504), "timeout");
  EXPECT_EQ(OutcomeFor(500), "error");
  EXPECT_EQ(OutcomeFor(501), "error");
  EXPECT_EQ(RouteName(InferenceRoute::kLocal), "local");
  EXPECT_EQ(RouteName(InferenceRoute::kOffloaded), "offloaded");
  EXPECT_EQ(RouteName(InferenceRoute::kForwardedIn), "forwarded_in");
}

TEST(NodeMetricsTest, InferenceMetricsCountByModelRouteAndOutcome) {
  telemetry::Registry registry;
  InferenceMetrics m(registry);
  m.Record("det", ModelKnown::kHere, InferenceRoute::kLocal, 200, 0.002);
  m.Record("det", ModelKnown::kHere, InferenceRoute::kLocal, 200, 0.004);
  m.Record("det", ModelKnown::kMesh, InferenceRoute::kOffloaded, 504, 3.0);
  m.Record("det", ModelKnown::kHere, InferenceRoute::kForwardedIn, 503, 0.0001);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_requests_total{model=\"det\",route=\"local\","
                              "outcome=\"success\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_requests_total{model=\"det\",route="
                              "\"offloaded\",outcome=\"timeout\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_requests_total{model=\"det\",route="
                              "\"forwarded_in\",outcome=\"unavailable\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_request_duration_seconds_bucket{model=\"det\","
                              "route=\"local\",le=\"0.0025\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_request_duration_seconds_bucket{model=\"det\","
                              "route=\"local\",le=\"0.005\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_request_duration_seconds_bucket{model=\"det\","
                              "route=\"offloaded\",le=\"2.5\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_request_duration_seconds_count{model=\"det\","
                              "route=\"offloaded\"} 1\n"));
}

TEST(NodeMetricsTest, ModelsNobodyServesShareOneSeriesAndTheNodesOwnAlwaysHaveTheirs) {
  telemetry::Registry registry;
  InferenceMetrics m(registry);
  // Made-up names: one series, whatever the names.
  for (int i = 0; i < 3000; ++i) {
    m.Record(std::string(1000, 'x') + std::to_string(i), ModelKnown::kUnknown,
             InferenceRoute::kLocal, 404, 0.001);
  }
  // Models of the mesh fill the family's bounded set...
  for (size_t i = 0; i < telemetry::kMaxSeriesPerFamily; ++i) {
    m.Record("peer-model-" + std::to_string(i), ModelKnown::kMesh, InferenceRoute::kOffloaded, 200,
             0.001);
  }
  // ...and this node's model still gets its own series.
  m.Record("mine", ModelKnown::kHere, InferenceRoute::kLocal, 200, 0.001);
  const std::string text = registry.Render();
  EXPECT_THAT(text,
              HasSubstr("hivemesh_inference_requests_total{model=\"_unknown\",route=\"local\","
                        "outcome=\"client_error\"} 3000\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_inference_requests_total{model=\"mine\",route=\"local\","
                              "outcome=\"success\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("xxxxxxxx")));
  EXPECT_LT(text.size(), 2u << 20);
}

TEST(NodeMetricsTest, BatchSizeBuckets) {
  BatchSizeStat b;
  for (uint64_t size : {1, 1, 2, 3, 4, 5, 128, 129, 1000}) b.Add(size);
  EXPECT_EQ(b.counts[0].load(), 2u);  // 1
  EXPECT_EQ(b.counts[1].load(), 1u);  // 2
  EXPECT_EQ(b.counts[2].load(), 2u);  // 3, 4
  EXPECT_EQ(b.counts[3].load(), 1u);  // 5
  EXPECT_EQ(b.counts[7].load(), 1u);  // 128
  EXPECT_EQ(b.counts[8].load(), 2u);  // above 128
  EXPECT_EQ(b.sum.load(), 1273u);
}

TEST(NodeMetricsTest, ServingCollectorsReadModelStatsAtScrapeTime) {
  test::TempDir dir;
  dir.Write("echo/config.yaml", test::IdentityModelConfig("instances: 2\nversion_policy: all\n"));
  dir.Write("echo/1/.keep", "");
  dir.Write("echo/3/.keep", "");
  BackendRegistry backends;
  RegisterBuiltinBackends(backends);
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Load({.path = dir.path()}, backends);
  ASSERT_TRUE(repo.ok()) << repo.status();
  telemetry::Registry registry;
  RegisterServingMetrics(registry, repo->get());
  RegisterBuildInfo(registry, "1.2.3", "node-x");

  absl::StatusOr<RuntimePtr> rt = (*repo)->Find("echo", "3");
  ASSERT_TRUE(rt.ok());
  for (int i = 0; i < 3; ++i) {
    InferRequest req;
    const float v = 1.5f;
    req.inputs.push_back(Tensor::Owned("INPUT0", DataType::kFp32, {1},
                                       std::string(reinterpret_cast<const char*>(&v), 4)));
    std::promise<bool> done;
    ASSERT_TRUE((*rt)
                    ->Submit(std::move(req),
                             [&](absl::StatusOr<InferResponse> r) { done.set_value(r.ok()); })
                    .ok());
    ASSERT_TRUE(done.get_future().get());
  }
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("hivemesh_model_batch_size_bucket{model=\"echo\",version=\"3\","
                              "le=\"1\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_model_batch_size_bucket{model=\"echo\",version=\"3\","
                              "le=\"128\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_model_batch_size_bucket{model=\"echo\",version=\"3\","
                              "le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_model_batch_size_count{model=\"echo\",version=\"1\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_model_queue_depth{model=\"echo\",version=\"3\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_model_in_flight{model=\"echo\",version=\"1\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_model_instances{model=\"echo\",version=\"3\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_model_rejected_requests_total{model=\"echo\",version="
                              "\"3\",reason=\"queue_full\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("hivemesh_build_info{version=\"1.2.3\",node=\"node-x\"} 1\n"));
  const test::PromtoolResult check = test::CheckMetrics(text);
  ASSERT_TRUE(check.ran) << check.output;
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;
  EXPECT_EQ(check.output, "");
}

}  // namespace
}  // namespace hivemesh
