// Dynamic batching in the runtime, on manual time: the "sim" test backend (sim_backend.h, the
// identity model) advances the runtime's ManualClock by a simulated compute time and can hold a
// worker at a gate. The policy's rules are tested alone in batching_policy_test.cc; these tests
// check that the runtime follows them with real threads, waits for batching delays and deadlines
// on its clock, and answers every request with its own rows.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "serving/backends/identity/identity_backend.h"
#include "serving/model_runtime.h"
#include "sim_backend.h"

namespace hivemesh {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Two inputs: FP32 [-1, 2] and BYTES [-1] (variable-length elements, split by walking them).
ModelConfig BatchingConfigOf(int max_batch_size, int64_t max_queue_delay_us, int instances = 1) {
  ModelConfig c;
  c.name = "batched";
  c.backend = "sim";
  c.instances = instances;
  c.queue_limit = 64;
  c.inputs = {{"x", DataType::kFp32, {-1, 2}, false}, {"s", DataType::kBytes, {-1}, true}};
  c.outputs = {{"y", DataType::kFp32, {-1, 2}, false}, {"t", DataType::kBytes, {-1}, true}};
  c.batching.max_batch_size = max_batch_size;
  c.batching.max_queue_delay_us = max_queue_delay_us;
  return c;
}

// A request of `rows` rows whose values all derive from `id`, so a mixed-up split shows.
InferRequest Rows(int id, int rows, bool with_bytes = true) {
  InferRequest r;
  r.id = std::to_string(id);
  std::vector<float> x;
  std::string s;
  for (int i = 0; i < rows; ++i) {
    x.push_back(static_cast<float>(id * 100 + i));
    x.push_back(static_cast<float>(-(id * 100 + i)));
    AppendBytesElement(s, std::string(static_cast<size_t>(id % 5 + i), 'a' + static_cast<char>(i)));
  }
  r.inputs.push_back(Tensor::Owned(
      "x", DataType::kFp32, {rows, 2},
      std::string(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float))));
  if (with_bytes) r.inputs.push_back(Tensor::Owned("s", DataType::kBytes, {rows}, s));
  return r;
}

// Checks that `response` holds exactly request `id`'s rows.
void ExpectOwnRows(const InferResponse& response, int id, int rows) {
  const InferRequest want = Rows(id, rows);
  EXPECT_EQ(response.id, std::to_string(id));
  ASSERT_EQ(response.outputs.size(), 2u);
  EXPECT_EQ(response.outputs[0].name(), "y");
  EXPECT_EQ(response.outputs[0].shape(), (Shape{rows, 2}));
  EXPECT_EQ(response.outputs[0].data(), want.inputs[0].data()) << "request " << id;
  EXPECT_EQ(response.outputs[1].name(), "t");
  EXPECT_EQ(response.outputs[1].shape(), (Shape{rows}));
  EXPECT_EQ(response.outputs[1].data(), want.inputs[1].data()) << "request " << id;
}

template <typename T>
bool ReadySoon(const std::future<T>& f, std::chrono::seconds limit = std::chrono::seconds(30)) {
  return f.wait_for(limit) == std::future_status::ready;
}
// For checks that something has NOT happened yet: a slow machine only makes them pass easier.
template <typename T>
bool NotReady(const std::future<T>& f) {
  return f.wait_for(milliseconds(20)) == std::future_status::timeout;
}

class ModelRuntimeBatchingTest : public ::testing::Test {
 protected:
  void SetUp() override { test::RegisterSimBackend(registry_, &sim_); }
  std::unique_ptr<ModelRuntime> Make(ModelConfig c) {
    auto rt = ModelRuntime::Create(std::move(c), "1", "/nonexistent", registry_, &expirer_);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return rt.ok() ? std::move(*rt) : nullptr;
  }
  // Drains `rt`, advancing the clock meanwhile so that batches waiting for company run.
  void DrainAdvancing(ModelRuntime& rt, Nanos step) {
    std::future<void> drained = std::async(std::launch::async, [&rt] { rt.Drain(); });
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (drained.wait_for(milliseconds(1)) != std::future_status::ready) {
      ASSERT_LT(std::chrono::steady_clock::now(), limit) << "Drain() did not return";
      clock_.Advance(step);
    }
  }
  ManualClock clock_{SteadyTime(std::chrono::hours(1))};
  test::SimControl sim_{clock_};
  BackendRegistry registry_;
  Expirer expirer_{clock_};
};

TEST_F(ModelRuntimeBatchingTest, ConcurrentRequestsRunAsFewerExecutions) {
  // A long queue delay: batches close only when full, so the count of executions is exact.
  auto rt = Make(BatchingConfigOf(8, 10'000'000));
  sim_.set_compute(milliseconds(20));
  ASSERT_NE(rt, nullptr);
  constexpr int kRequests = 16;
  std::vector<std::promise<absl::StatusOr<InferResponse>>> answers(kRequests);
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = t; i < kRequests; i += 4) {
        absl::Status s = rt->Submit(Rows(i, 1), [&answers, i](absl::StatusOr<InferResponse> r) {
          answers[static_cast<size_t>(i)].set_value(std::move(r));
        });
        EXPECT_TRUE(s.ok()) << s;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  for (int i = 0; i < kRequests; ++i) {
    absl::StatusOr<InferResponse> r = answers[static_cast<size_t>(i)].get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectOwnRows(*r, i, 1);
  }
  rt->Drain();
  const ModelStats& s = rt->stats();
  EXPECT_EQ(s.execution_count.load(), 2u) << "16 requests in two full batches of 8";
  EXPECT_EQ(s.inference_count.load(), 16u) << "inference_count counts requests";
  EXPECT_EQ(s.batch_size.counts[3].load(), 2u) << "two executions of size 8 (bucket (4, 8])";
  EXPECT_EQ(s.batch_size.sum.load(), 16u);
  EXPECT_EQ(s.success.count.load(), 16u);
  const auto by_size = s.batch_stats.Snapshot();
  ASSERT_EQ(by_size.size(), 1u) << "every execution ran 8 rows";
  EXPECT_EQ(by_size.begin()->first, 8u);
  EXPECT_EQ(by_size.begin()->second.count, 2u);
  EXPECT_EQ(by_size.begin()->second.infer_ns, 40'000'000u) << "two executions of 20 ms";
  EXPECT_EQ(s.ewma_service_ns.load(), 20'000'000u);
}

TEST_F(ModelRuntimeBatchingTest, SplitsRequestsOfSeveralRowsBack) {
  auto rt = Make(BatchingConfigOf(8, 10'000'000));
  ASSERT_NE(rt, nullptr);
  const int rows[] = {1, 3, 2, 2};  // 8 rows: one full batch
  std::vector<std::promise<absl::StatusOr<InferResponse>>> answers(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(rt->Submit(Rows(i, rows[i]), [&answers, i](absl::StatusOr<InferResponse> r) {
                    answers[static_cast<size_t>(i)].set_value(std::move(r));
                  }).ok());
  }
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<InferResponse> r = answers[static_cast<size_t>(i)].get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectOwnRows(*r, i, rows[i]);
  }
  EXPECT_EQ(rt->stats().execution_count.load(), 1u);
  EXPECT_EQ(rt->stats().inference_count.load(), 4u);
}

TEST_F(ModelRuntimeBatchingTest, RequestedOutputsAreChosenPerRequest) {
  auto rt = Make(BatchingConfigOf(2, 10'000'000));
  ASSERT_NE(rt, nullptr);
  InferRequest only_t = Rows(1, 1);
  only_t.outputs.push_back({"t", true});
  std::promise<absl::StatusOr<InferResponse>> a, b;
  ASSERT_TRUE(rt->Submit(std::move(only_t), [&](auto r) { a.set_value(std::move(r)); }).ok());
  ASSERT_TRUE(rt->Submit(Rows(2, 1), [&](auto r) { b.set_value(std::move(r)); }).ok());
  absl::StatusOr<InferResponse> ra = a.get_future().get();
  absl::StatusOr<InferResponse> rb = b.get_future().get();
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_EQ(ra->outputs.size(), 1u);
  EXPECT_EQ(ra->outputs[0].name(), "t");
  EXPECT_TRUE(ra->binary[0]);
  EXPECT_EQ(ra->outputs[0].data(), Rows(1, 1).inputs[1].data());
  ExpectOwnRows(*rb, 2, 1);
  EXPECT_EQ(rt->stats().execution_count.load(), 1u);
}

TEST_F(ModelRuntimeBatchingTest, ALoneRequestRunsAfterMaxQueueDelay) {
  auto rt = Make(BatchingConfigOf(8, 50'000));
  ASSERT_NE(rt, nullptr);
  std::promise<absl::StatusOr<InferResponse>> p;
  const SteadyTime start = clock_.Now();
  ASSERT_TRUE(rt->Submit(Rows(7, 1), [&](auto r) { p.set_value(std::move(r)); }).ok());
  std::future<absl::StatusOr<InferResponse>> answer = p.get_future();
  clock_.Advance(milliseconds(49));
  EXPECT_TRUE(NotReady(answer)) << "it waits max_queue_delay_us for company";
  clock_.Advance(milliseconds(1));
  ASSERT_TRUE(ReadySoon(answer)) << "it runs once max_queue_delay_us has passed";
  absl::StatusOr<InferResponse> r = answer.get();
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectOwnRows(*r, 7, 1);
  EXPECT_EQ(rt->stats().queue.ns.load(), static_cast<uint64_t>((clock_.Now() - start).count()))
      << "it waited exactly the delay";
  EXPECT_EQ(rt->stats().execution_count.load(), 1u);
  EXPECT_EQ(rt->stats().batch_size.counts[0].load(), 1u) << "a batch of one";
}

TEST_F(ModelRuntimeBatchingTest, ADeadlineClosesTheBatchEarly) {
  // Without the deadline these two would wait 10 s for six more requests.
  auto rt = Make(BatchingConfigOf(8, 10'000'000));
  ASSERT_NE(rt, nullptr);
  std::promise<absl::StatusOr<InferResponse>> a, b;
  ASSERT_TRUE(rt->Submit(Rows(1, 1), [&](auto r) { a.set_value(std::move(r)); }).ok());
  InferRequest bounded = Rows(2, 2);
  bounded.deadline = clock_.Now() + milliseconds(200);
  ASSERT_TRUE(rt->Submit(std::move(bounded), [&](auto r) { b.set_value(std::move(r)); }).ok());
  std::future<absl::StatusOr<InferResponse>> fa = a.get_future(), fb = b.get_future();
  clock_.Advance(milliseconds(150));
  EXPECT_TRUE(NotReady(fb)) << "the batch still waits for company";
  // The batch closes one execution's estimate (none measured yet) plus the runtime's wake-up
  // slack (5 ms) before the deadline: still before the deadline itself.
  clock_.Advance(milliseconds(46));
  ASSERT_TRUE(ReadySoon(fa) && ReadySoon(fb));
  absl::StatusOr<InferResponse> ra = fa.get();
  absl::StatusOr<InferResponse> rb = fb.get();
  ASSERT_TRUE(rb.ok()) << "started before its deadline: " << rb.status();
  ASSERT_TRUE(ra.ok()) << ra.status();
  ExpectOwnRows(*ra, 1, 1);
  ExpectOwnRows(*rb, 2, 2);
  EXPECT_EQ(rt->stats().execution_count.load(), 1u) << "both in the batch the deadline closed";
  EXPECT_EQ(rt->stats().expired_in_queue.load(), 0u);
}

TEST_F(ModelRuntimeBatchingTest, ExpiredWhileBusyIsAnsweredAndNotComputed) {
  // The worker is held busy; a request with a 50 ms deadline waits behind it.
  auto rt = Make(BatchingConfigOf(1, 0));
  ASSERT_NE(rt, nullptr);
  sim_.Close();
  std::promise<void> first_done;
  ASSERT_TRUE(rt->Submit(Rows(1, 1), [&](auto r) {
                  EXPECT_TRUE(r.ok());
                  first_done.set_value();
                }).ok());
  ASSERT_TRUE(sim_.AwaitStarted(1));
  InferRequest late = Rows(2, 1);
  late.deadline = clock_.Now() + milliseconds(50);
  std::promise<absl::Status> late_result;
  ASSERT_TRUE(rt->Submit(std::move(late), [&](auto r) { late_result.set_value(r.status()); }).ok());
  clock_.Advance(milliseconds(50));
  std::future<absl::Status> late_answer = late_result.get_future();
  ASSERT_TRUE(ReadySoon(late_answer)) << "answered while the worker is still busy";
  EXPECT_EQ(late_answer.get().code(), absl::StatusCode::kDeadlineExceeded);
  sim_.Open();
  first_done.get_future().wait();
  rt->Drain();
  EXPECT_EQ(rt->stats().execution_count.load(), 1u) << "the expired request was not computed";
  EXPECT_EQ(rt->stats().expired_in_queue.load(), 1u);
}

TEST_F(ModelRuntimeBatchingTest, RequestsAWorkerFindsExpiredLeaveTheCountsBalanced) {
  // Deadlines that pass (the clock moves 2 us) just after the request is queued: the idle
  // worker, woken at once, and the expirer race to answer it; the worker usually finds it passed
  // first and answers it itself. Every answer must be counted once, so that
  // nothing is left "in flight" and a drain waits for exactly what runs.
  for (int64_t delay_us : {0, 100}) {
    auto rt = Make(BatchingConfigOf(4, delay_us));
    ASSERT_NE(rt, nullptr);
    int expired = 0;
    for (int i = 0; i < 300; ++i) {
      InferRequest r = Rows(i, 1);
      r.deadline = clock_.Now() + std::chrono::microseconds(1);
      std::promise<absl::Status> done;
      absl::Status admitted = rt->Submit(
          std::move(r), [&](absl::StatusOr<InferResponse> a) { done.set_value(a.status()); });
      clock_.Advance(std::chrono::microseconds(2));
      ASSERT_TRUE(admitted.ok()) << admitted;
      if (done.get_future().get().code() == absl::StatusCode::kDeadlineExceeded) ++expired;
    }
    EXPECT_GT(expired, 0) << "delay " << delay_us;
    // Every request was answered, so none is in flight.
    EXPECT_EQ(rt->stats().in_flight.load(), 0) << "delay " << delay_us;
    EXPECT_EQ(rt->stats().queue_depth.load(), 0);
    // A drain returns (miscounted answers made it wait forever).
    auto drained = std::make_shared<std::promise<void>>();
    std::future<void> done = drained->get_future();
    std::thread([raw = rt.get(), drained] {
      raw->Drain();
      drained->set_value();
    }).detach();
    if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      ADD_FAILURE() << "Drain() did not return; delay " << delay_us;
      (void)rt.release();  // cannot be destroyed: its destructor would wait forever too
      return;
    }
  }
}

TEST_F(ModelRuntimeBatchingTest, OnlyRequestsOfTheSameShapeBatchTogether) {
  auto rt = Make(BatchingConfigOf(8, 30'000));
  ASSERT_NE(rt, nullptr);
  // Without the optional BYTES input, the requests cannot be concatenated with those that have
  // it: they form their own batch.
  std::vector<std::promise<absl::StatusOr<InferResponse>>> answers(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(rt->Submit(Rows(i, 1, /*with_bytes=*/i % 2 == 0), [&answers, i](auto r) {
                    answers[static_cast<size_t>(i)].set_value(std::move(r));
                  }).ok());
  }
  // Neither batch is full: both wait for the oldest request's 30 ms, then run.
  clock_.Advance(milliseconds(30));
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<InferResponse> r = answers[static_cast<size_t>(i)].get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outputs.size(), i % 2 == 0 ? 2u : 1u);
    EXPECT_EQ(r->outputs[0].data(), Rows(i, 1).inputs[0].data());
  }
  rt->Drain();
  EXPECT_EQ(rt->stats().execution_count.load(), 2u);
  EXPECT_EQ(rt->stats().batch_size.counts[1].load(), 2u) << "two batches of two";
}

TEST_F(ModelRuntimeBatchingTest, BatchSizesAreValidated) {
  auto rt = Make(BatchingConfigOf(4, 1000));
  ASSERT_NE(rt, nullptr);
  absl::Status big = rt->Submit(Rows(1, 5), [](auto) { FAIL(); });
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.message()),
              HasSubstr("batch size (first dimension) 5 is outside [1, 4]"));
  InferRequest mismatch = Rows(1, 2);
  mismatch.inputs[1] = Rows(1, 3).inputs[1];
  absl::Status m = rt->Submit(std::move(mismatch), [](auto) { FAIL(); });
  EXPECT_THAT(std::string(m.message()),
              HasSubstr("input 's': batch size (first dimension) 3 differs from input 'x''s 2"));
  absl::Status empty = rt->Submit(Rows(1, 0), [](auto) { FAIL(); });
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelRuntimeBatchingTest, DrainAnswersEverythingWithSeveralInstances) {
  auto rt = Make(BatchingConfigOf(4, 5'000, /*instances=*/2));
  ASSERT_NE(rt, nullptr);
  sim_.set_compute(milliseconds(2));
  std::atomic<int> answered{0};
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(rt->Submit(Rows(i, 1 + i % 2), [&answered, i](absl::StatusOr<InferResponse> r) {
                    EXPECT_TRUE(r.ok()) << r.status();
                    if (r.ok()) ExpectOwnRows(*r, i, 1 + i % 2);
                    answered++;
                  }).ok());
  }
  DrainAdvancing(*rt, milliseconds(1));
  EXPECT_EQ(answered.load(), 30);
  EXPECT_LT(rt->stats().execution_count.load(), 30u);
  EXPECT_EQ(rt->stats().inference_count.load(), 30u);
}

}  // namespace
}  // namespace hivemesh
