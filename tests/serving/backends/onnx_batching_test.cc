// Dynamic batching with a real ONNX model: the committed vibration model run through the runtime
// with batching on gives every request the scores it gets alone.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <random>

#include "serving/backends/backend_test_util.h"
#include "serving/model_runtime.h"

namespace hivemesh {
namespace {

using testing_util::LoadModelConfig;
using testing_util::ModelDir;

InferRequest Window(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> x(128);
  for (float& v : x) v = noise(rng);
  InferRequest r;
  r.id = std::to_string(seed);
  r.inputs.push_back(Tensor::Owned(
      "window", DataType::kFp32, {1, 128},
      std::string(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float))));
  return r;
}

class OnnxBatchingTest : public ::testing::Test {
 protected:
  void SetUp() override { RegisterBuiltinBackends(registry_); }

  std::unique_ptr<ModelRuntime> Make(int max_batch_size) {
    absl::StatusOr<ModelConfig> config = LoadModelConfig("vibration-anomaly");
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) return nullptr;
    config->batching.max_batch_size = max_batch_size;
    config->batching.max_queue_delay_us = 10'000'000;  // close batches only when full
    auto rt = ModelRuntime::Create(*config, "1", ModelDir("vibration-anomaly") + "/1", registry_,
                                   &expirer_);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return rt.ok() ? std::move(*rt) : nullptr;
  }

  // Submits every request at once and returns the responses in order.
  static std::vector<InferResponse> RunAll(ModelRuntime& rt, int n) {
    std::vector<std::promise<absl::StatusOr<InferResponse>>> answers(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(rt.Submit(Window(static_cast<uint32_t>(i)), [&answers, i](auto r) {
                      answers[static_cast<size_t>(i)].set_value(std::move(r));
                    }).ok());
    }
    std::vector<InferResponse> out;
    for (auto& a : answers) {
      absl::StatusOr<InferResponse> r = a.get_future().get();
      EXPECT_TRUE(r.ok()) << r.status();
      if (r.ok()) out.push_back(*std::move(r));
    }
    return out;
  }

  BackendRegistry registry_;
  Expirer expirer_;
};

TEST_F(OnnxBatchingTest, BatchedScoresEqualTheScoresAlone) {
  constexpr int kRequests = 8;
  auto batched = Make(4);
  auto alone = Make(0);
  ASSERT_TRUE(batched && alone);
  const std::vector<InferResponse> b = RunAll(*batched, kRequests);
  const std::vector<InferResponse> a = RunAll(*alone, kRequests);
  ASSERT_EQ(b.size(), static_cast<size_t>(kRequests));
  ASSERT_EQ(a.size(), static_cast<size_t>(kRequests));
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(b[i].id, std::to_string(i));
    ASSERT_EQ(b[i].outputs.size(), 1u);
    EXPECT_EQ(b[i].outputs[0].shape(), (Shape{1, 2}));
    const std::span<const float> got = b[i].outputs[0].As<float>();
    const std::span<const float> want = a[i].outputs[0].As<float>();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_NEAR(got[0], want[0], 1e-5) << "request " << i;
    EXPECT_NEAR(got[1], want[1], 1e-5) << "request " << i;
  }
  EXPECT_EQ(batched->stats().execution_count.load(), 2u) << "two full batches of four";
  EXPECT_EQ(alone->stats().execution_count.load(), static_cast<uint64_t>(kRequests));
}

}  // namespace
}  // namespace hivemesh
