#include "serving/model_runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "serving/backends/identity/identity_backend.h"

namespace hivemesh {
namespace {

using ::testing::HasSubstr;

ModelConfig IdentityConfig(int queue_limit, int delay_us, int instances = 1) {
  ModelConfig c;
  c.name = "id";
  c.backend = "identity";
  c.instances = instances;
  c.queue_limit = queue_limit;
  c.inputs = {{"in", DataType::kFp32, {-1}, false}};
  c.outputs = {{"out", DataType::kFp32, {-1}, false}};
  c.options["delay_us"] = std::to_string(delay_us);
  return c;
}

InferRequest Request(float v) {
  InferRequest r;
  std::string raw(reinterpret_cast<const char*>(&v), 4);
  r.inputs.push_back(Tensor::Owned("in", DataType::kFp32, {1}, raw));
  return r;
}

class ModelRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override { RegisterIdentityBackend(registry_); }
  std::unique_ptr<ModelRuntime> Make(ModelConfig c) {
    auto rt = ModelRuntime::Create(std::move(c), "1", "/nonexistent", registry_, &expirer_);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return std::move(*rt);
  }
  BackendRegistry registry_;
  Expirer expirer_;
};

TEST_F(ModelRuntimeTest, RunsOnAWorkerAndAnswersOnce) {
  auto rt = Make(IdentityConfig(4, 0));
  std::promise<absl::StatusOr<InferResponse>> p;
  const auto caller = std::this_thread::get_id();
  std::thread::id worker;
  ASSERT_TRUE(rt->Submit(Request(2.5f), [&](absl::StatusOr<InferResponse> r) {
                  worker = std::this_thread::get_id();
                  p.set_value(std::move(r));
                }).ok());
  auto r = p.get_future().get();
  ASSERT_TRUE(r.ok());
  EXPECT_NE(worker, caller) << "compute must not run on the caller's thread";
  EXPECT_EQ(r->outputs[0].name(), "out");
  EXPECT_EQ(r->outputs[0].As<float>()[0], 2.5f);
  EXPECT_EQ(r->model_version, "1");
  EXPECT_EQ(rt->stats().inference_count.load(), 1u);
}

TEST_F(ModelRuntimeTest, AnAnsweredRequestNoLongerCountsAsInFlight) {
  // The answer may reach its client, and the client's next request this node's routing, before
  // the worker is back for more: from its callback on, a request is not in flight (else a
  // node serving one client at a time would see itself busy and offload the next request).
  auto rt = Make(IdentityConfig(8, 20000));
  std::promise<int64_t> seen_first, seen_expired;
  ASSERT_TRUE(rt->Submit(Request(1), [&](auto) {
                  seen_first.set_value(rt->stats().in_flight.load());
                }).ok());
  // Expires while the first runs (20 ms): answered by the expirer, also counted until then.
  InferRequest late = Request(2);
  late.deadline = SystemClock::Get().Now() + std::chrono::milliseconds(5);
  ASSERT_TRUE(rt->Submit(std::move(late), [&](auto) {
                  seen_expired.set_value(rt->stats().in_flight.load());
                }).ok());
  EXPECT_EQ(seen_expired.get_future().get(), 1) << "the first request is still running";
  EXPECT_EQ(seen_first.get_future().get(), 0);
  rt->Drain();
  EXPECT_EQ(rt->stats().in_flight.load(), 0);
}

TEST_F(ModelRuntimeTest, ValidatesAgainstTheConfig) {
  auto rt = Make(IdentityConfig(4, 0));
  InferRequest wrong_type;
  wrong_type.inputs.push_back(Tensor::Owned("in", DataType::kInt32, {1}, std::string(4, '\0')));
  absl::Status s = rt->Submit(std::move(wrong_type), [](auto) { FAIL(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("datatype INT32 does not match the model's FP32"));
  InferRequest missing;
  EXPECT_THAT(std::string(rt->Submit(std::move(missing), [](auto) { FAIL(); }).message()),
              HasSubstr("input 'in' is required"));
  InferRequest bad_output = Request(1);
  bad_output.outputs.push_back({"nope", false});
  EXPECT_THAT(std::string(rt->Submit(std::move(bad_output), [](auto) { FAIL(); }).message()),
              HasSubstr("requested output 'nope'"));
}

TEST_F(ModelRuntimeTest, ShedsWhenTheQueueIsFull) {
  auto rt = Make(IdentityConfig(2, 100000));
  std::atomic<int> answered{0};
  auto cb = [&](absl::StatusOr<InferResponse> r) {
    EXPECT_TRUE(r.ok());
    answered++;
  };
  ASSERT_TRUE(rt->Submit(Request(1), cb).ok());
  // Wait until the worker has taken the first one, so the queue is empty again.
  while (rt->stats().in_flight.load() == 0) std::this_thread::yield();
  ASSERT_TRUE(rt->Submit(Request(2), cb).ok());
  ASSERT_TRUE(rt->Submit(Request(3), cb).ok());
  InferRequest fourth = Request(4);
  absl::Status shed = rt->Submit(std::move(fourth), cb);
  EXPECT_EQ(shed.code(), absl::StatusCode::kResourceExhausted);
  ASSERT_EQ(fourth.inputs.size(), 1u) << "a refused request stays the caller's (to offload it)";
  EXPECT_EQ(fourth.inputs[0].data().size(), Request(4).inputs[0].data().size());
  EXPECT_THAT(std::string(shed.message()), HasSubstr("queue is full (2 requests waiting)"));
  EXPECT_EQ(rt->stats().rejected_queue_full.load(), 1u);
  rt->Drain();
  EXPECT_EQ(answered.load(), 3);
}

TEST_F(ModelRuntimeTest, ExpiredWhileQueuedIsAnsweredAndNeverComputed) {
  auto rt = Make(IdentityConfig(8, 200000));
  std::promise<void> first_done;
  ASSERT_TRUE(rt->Submit(Request(1), [&](auto r) {
                  EXPECT_TRUE(r.ok());
                  first_done.set_value();
                }).ok());
  InferRequest late = Request(2);
  late.deadline = SystemClock::Get().Now() + std::chrono::milliseconds(30);
  std::promise<absl::Status> late_result;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt->Submit(std::move(late), [&](absl::StatusOr<InferResponse> r) {
                  late_result.set_value(r.status());
                }).ok());
  const absl::Status s = late_result.get_future().get();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
  first_done.get_future().wait();
  rt->Drain();
  EXPECT_EQ(rt->stats().execution_count.load(), 1u) << "the expired request was not computed";
  EXPECT_EQ(rt->stats().expired_in_queue.load(), 1u);
  // A deadline already past is refused at once.
  InferRequest past = Request(3);
  past.deadline = SystemClock::Get().Now() - std::chrono::milliseconds(1);
  auto rt2 = Make(IdentityConfig(8, 0));
  EXPECT_EQ(rt2->Submit(std::move(past), [](auto) { FAIL(); }).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ModelRuntimeTest, DrainAnswersEverythingQueuedThenRefuses) {
  auto rt = Make(IdentityConfig(100, 5000, 2));
  std::atomic<int> answered{0};
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(rt->Submit(Request(static_cast<float>(i)), [&](auto r) {
                    EXPECT_TRUE(r.ok());
                    answered++;
                  }).ok());
  }
  rt->Drain();
  EXPECT_EQ(answered.load(), 20);
  EXPECT_EQ(rt->Submit(Request(1), [](auto) { FAIL(); }).code(), absl::StatusCode::kUnavailable);
}

TEST_F(ModelRuntimeTest, UnknownBackendAndBadOptionsAreLoadErrors) {
  ModelConfig c = IdentityConfig(1, 0);
  c.backend = "tensorrt";
  auto rt = ModelRuntime::Create(c, "1", "/x", registry_, &expirer_);
  ASSERT_FALSE(rt.ok());
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("backend: unknown backend 'tensorrt'"));
  ModelConfig d = IdentityConfig(1, 0);
  d.options["delay_us"] = "soon";
  auto rt2 = ModelRuntime::Create(d, "1", "/x", registry_, &expirer_);
  ASSERT_FALSE(rt2.ok());
  EXPECT_THAT(std::string(rt2.status().message()), HasSubstr("options.delay_us"));
}

}  // namespace
}  // namespace hivemesh
