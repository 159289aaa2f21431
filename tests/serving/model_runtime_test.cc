// The model runtime on manual time: the "sim" test backend (sim_backend.h) holds a worker busy
// at a gate and advances the runtime's ManualClock by a simulated compute time, so queueing,
// shedding, expiry and the statistics are checked without sleeping or timing anything.
#include "serving/model_runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "serving/backends/identity/identity_backend.h"
#include "sim_backend.h"

namespace hivemesh {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

ModelConfig SimConfig(int queue_limit, int instances = 1) {
  ModelConfig c;
  c.name = "id";
  c.backend = "sim";
  c.instances = instances;
  c.queue_limit = queue_limit;
  c.inputs = {{"in", DataType::kFp32, {-1}, false}};
  c.outputs = {{"out", DataType::kFp32, {-1}, false}};
  return c;
}

InferRequest Request(float v) {
  InferRequest r;
  std::string raw(reinterpret_cast<const char*>(&v), 4);
  r.inputs.push_back(Tensor::Owned("in", DataType::kFp32, {1}, raw));
  return r;
}

// True if `f` becomes ready within `limit` of real time (the runtime's threads need a moment).
template <typename T>
bool ReadySoon(const std::future<T>& f, std::chrono::seconds limit = std::chrono::seconds(30)) {
  return f.wait_for(limit) == std::future_status::ready;
}
// True if `f` is still not ready after a short real-time grace: for checks that something has
// NOT happened yet (a slow machine can only make such a check pass more easily).
template <typename T>
bool NotReady(const std::future<T>& f) {
  return f.wait_for(milliseconds(20)) == std::future_status::timeout;
}

class ModelRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterIdentityBackend(registry_);
    test::RegisterSimBackend(registry_, &sim_);
  }
  std::unique_ptr<ModelRuntime> Make(ModelConfig c) {
    auto rt = ModelRuntime::Create(std::move(c), "1", "/nonexistent", registry_, &expirer_);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return std::move(*rt);
  }
  ManualClock clock_{SteadyTime(std::chrono::hours(1))};
  test::SimControl sim_{clock_};
  BackendRegistry registry_;
  Expirer expirer_{clock_};
};

TEST_F(ModelRuntimeTest, RunsOnAWorkerAndAnswersOnce) {
  auto rt = Make(SimConfig(4));
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
  auto rt = Make(SimConfig(8));
  sim_.Close();
  std::promise<int64_t> seen_first, seen_expired;
  ASSERT_TRUE(rt->Submit(Request(1), [&](auto) {
                  seen_first.set_value(rt->stats().in_flight.load());
                }).ok());
  ASSERT_TRUE(sim_.AwaitStarted(1));
  // Expires while the first runs: answered by the expirer, also counted until then.
  InferRequest late = Request(2);
  late.deadline = clock_.Now() + milliseconds(5);
  ASSERT_TRUE(rt->Submit(std::move(late), [&](auto) {
                  seen_expired.set_value(rt->stats().in_flight.load());
                }).ok());
  clock_.Advance(milliseconds(5));
  std::future<int64_t> expired = seen_expired.get_future();
  ASSERT_TRUE(ReadySoon(expired));
  EXPECT_EQ(expired.get(), 1) << "the first request is still running";
  sim_.Open();
  EXPECT_EQ(seen_first.get_future().get(), 0);
  rt->Drain();
  EXPECT_EQ(rt->stats().in_flight.load(), 0);
}

TEST_F(ModelRuntimeTest, ValidatesAgainstTheConfig) {
  auto rt = Make(SimConfig(4));
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
  auto rt = Make(SimConfig(2));
  sim_.Close();
  std::atomic<int> answered{0};
  auto cb = [&](absl::StatusOr<InferResponse> r) {
    EXPECT_TRUE(r.ok());
    answered++;
  };
  ASSERT_TRUE(rt->Submit(Request(1), cb).ok());
  // The worker has taken the first one (it waits at the gate), so the queue is empty again.
  ASSERT_TRUE(sim_.AwaitStarted(1));
  ASSERT_TRUE(rt->Submit(Request(2), cb).ok());
  ASSERT_TRUE(rt->Submit(Request(3), cb).ok());
  InferRequest fourth = Request(4);
  absl::Status shed = rt->Submit(std::move(fourth), cb);
  EXPECT_EQ(shed.code(), absl::StatusCode::kResourceExhausted);
  ASSERT_EQ(fourth.inputs.size(), 1u) << "a refused request stays the caller's (to offload it)";
  EXPECT_EQ(fourth.inputs[0].data().size(), Request(4).inputs[0].data().size());
  EXPECT_THAT(std::string(shed.message()), HasSubstr("queue is full (2 requests waiting)"));
  EXPECT_EQ(rt->stats().rejected_queue_full.load(), 1u);
  EXPECT_EQ(rt->stats().queue_depth.load(), 2);
  sim_.Open();
  rt->Drain();
  EXPECT_EQ(answered.load(), 3);
}

TEST_F(ModelRuntimeTest, ExpiredWhileQueuedIsAnsweredOnTimeAndNeverComputed) {
  auto rt = Make(SimConfig(8));
  sim_.Close();
  std::promise<void> first_done;
  ASSERT_TRUE(rt->Submit(Request(1), [&](auto r) {
                  EXPECT_TRUE(r.ok());
                  first_done.set_value();
                }).ok());
  ASSERT_TRUE(sim_.AwaitStarted(1));
  InferRequest late = Request(2);
  late.deadline = clock_.Now() + milliseconds(30);
  std::promise<absl::Status> late_result;
  ASSERT_TRUE(rt->Submit(std::move(late), [&](absl::StatusOr<InferResponse> r) {
                  late_result.set_value(r.status());
                }).ok());
  std::future<absl::Status> late_answer = late_result.get_future();
  clock_.Advance(milliseconds(29));
  EXPECT_TRUE(NotReady(late_answer)) << "not before its deadline";
  clock_.Advance(milliseconds(1));
  // Answered at its deadline, while the worker is still busy with the first request.
  ASSERT_TRUE(ReadySoon(late_answer));
  EXPECT_EQ(late_answer.get().code(), absl::StatusCode::kDeadlineExceeded);
  std::future<void> first = first_done.get_future();
  EXPECT_TRUE(NotReady(first)) << "the first request was still running";
  sim_.Open();
  first.wait();
  rt->Drain();
  EXPECT_EQ(rt->stats().execution_count.load(), 1u) << "the expired request was not computed";
  EXPECT_EQ(rt->stats().expired_in_queue.load(), 1u);
  EXPECT_EQ(rt->stats().fail.count.load(), 1u);
  EXPECT_EQ(rt->stats().fail.ns.load(), 30'000'000u) << "it waited 30 ms on the runtime's clock";
  // A deadline already past is refused at once.
  InferRequest past = Request(3);
  past.deadline = clock_.Now() - milliseconds(1);
  auto rt2 = Make(SimConfig(8));
  EXPECT_EQ(rt2->Submit(std::move(past), [](auto) { FAIL(); }).code(),
            absl::StatusCode::kDeadlineExceeded);
}

// A request its sender cancelled while it waited (InferRequest::cancelled: a hedge won on
// another node) is answered CANCELLED when a worker reaches it, without being computed; one
// whose flag is still clear runs as usual. The same with dynamic batching.
TEST_F(ModelRuntimeTest, CancelledWhileQueuedIsAnsweredAndNeverComputed) {
  for (bool batching : {false, true}) {
    SCOPED_TRACE(batching ? "batching" : "one at a time");
    ModelConfig config = SimConfig(8);
    if (batching) config.batching.max_batch_size = 4;
    auto rt = Make(config);
    sim_.Close();
    std::promise<void> first_done;
    ASSERT_TRUE(rt->Submit(Request(1), [&](auto r) {
                    EXPECT_TRUE(r.ok());
                    first_done.set_value();
                  }).ok());
    ASSERT_TRUE(sim_.AwaitStarted(1));
    std::atomic<bool> cancel{false}, keep{false};
    InferRequest given_up = Request(2);
    given_up.cancelled = &cancel;
    InferRequest wanted = Request(3);
    wanted.cancelled = &keep;
    std::promise<absl::Status> given_up_result, wanted_result;
    ASSERT_TRUE(rt->Submit(std::move(given_up), [&](absl::StatusOr<InferResponse> r) {
                    given_up_result.set_value(r.status());
                  }).ok());
    ASSERT_TRUE(rt->Submit(std::move(wanted), [&](absl::StatusOr<InferResponse> r) {
                    wanted_result.set_value(r.status());
                  }).ok());
    cancel.store(true);
    sim_.Open();
    first_done.get_future().wait();
    std::future<absl::Status> a = given_up_result.get_future();
    std::future<absl::Status> b = wanted_result.get_future();
    ASSERT_TRUE(ReadySoon(a));
    ASSERT_TRUE(ReadySoon(b));
    EXPECT_EQ(a.get().code(), absl::StatusCode::kCancelled);
    EXPECT_TRUE(b.get().ok());
    rt->Drain();
    EXPECT_EQ(rt->stats().cancelled_in_queue.load(), 1u);
    EXPECT_EQ(rt->stats().in_flight.load(), 0);
    EXPECT_EQ(rt->stats().success.count.load(), 2u) << "the cancelled one was not computed";
  }
}

TEST_F(ModelRuntimeTest, TimesAndTheServiceAverageAreTheClocks) {
  auto rt = Make(SimConfig(8));
  auto run = [&](float v) {
    std::promise<absl::StatusOr<InferResponse>> p;
    EXPECT_TRUE(rt->Submit(Request(v), [&](auto r) { p.set_value(std::move(r)); }).ok());
    return p.get_future().get();
  };
  sim_.set_compute(milliseconds(3));
  absl::StatusOr<InferResponse> r = run(1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->compute_ns, 3'000'000u);
  const ModelStats& s = rt->stats();
  EXPECT_EQ(s.ewma_service_ns.load(), 3'000'000u) << "the first sample as it is";
  EXPECT_EQ(s.compute_infer.ns.load(), 3'000'000u);
  EXPECT_EQ(s.queue.ns.load(), 0u) << "the worker took it at once";
  EXPECT_EQ(s.success.ns.load(), 3'000'000u);
  sim_.set_compute(milliseconds(8));
  ASSERT_TRUE(run(2).ok());
  EXPECT_EQ(s.ewma_service_ns.load(), 4'000'000u) << "(3 x 4 + 8) / 5 ms";
  EXPECT_EQ(s.compute_infer.ns.load(), 11'000'000u);
  // A request queued behind a busy worker counts its wait as queue time.
  sim_.Close();
  std::promise<void> a, b;
  ASSERT_TRUE(rt->Submit(Request(3), [&](auto) { a.set_value(); }).ok());
  ASSERT_TRUE(sim_.AwaitStarted(3));
  ASSERT_TRUE(rt->Submit(Request(4), [&](auto) { b.set_value(); }).ok());
  sim_.set_compute(milliseconds(2));
  sim_.Open();
  a.get_future().wait();
  b.get_future().wait();
  EXPECT_EQ(s.queue.ns.load(), 2'000'000u) << "the second waited for the first's 2 ms";
}

TEST_F(ModelRuntimeTest, DrainAnswersEverythingQueuedThenRefuses) {
  auto rt = Make(SimConfig(100, 2));
  sim_.set_compute(milliseconds(5));
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
  ModelConfig c = SimConfig(1);
  c.backend = "tensorrt";
  auto rt = ModelRuntime::Create(c, "1", "/x", registry_, &expirer_);
  ASSERT_FALSE(rt.ok());
  EXPECT_THAT(std::string(rt.status().message()), HasSubstr("backend: unknown backend 'tensorrt'"));
  ModelConfig d = SimConfig(1);
  d.backend = "identity";
  d.options["delay_us"] = "soon";
  auto rt2 = ModelRuntime::Create(d, "1", "/x", registry_, &expirer_);
  ASSERT_FALSE(rt2.ok());
  EXPECT_THAT(std::string(rt2.status().message()), HasSubstr("options.delay_us"));
}

}  // namespace
}  // namespace hivemesh
