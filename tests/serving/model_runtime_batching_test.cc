// Dynamic batching in the runtime, with the identity backend (its delay_us stands for compute).
// The policy's rules are tested with a manual clock in batching_policy_test.cc; these tests check
// that the runtime follows them with real threads and answers every request with its own rows.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "serving/backends/identity/identity_backend.h"
#include "serving/model_runtime.h"

namespace hivemesh {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// Two inputs: FP32 [-1, 2] and BYTES [-1] (variable-length elements, split by walking them).
ModelConfig BatchingConfigOf(int max_batch_size, int64_t max_queue_delay_us, int delay_us,
                             int instances = 1) {
  ModelConfig c;
  c.name = "batched";
  c.backend = "identity";
  c.instances = instances;
  c.queue_limit = 64;
  c.inputs = {{"x", DataType::kFp32, {-1, 2}, false}, {"s", DataType::kBytes, {-1}, true}};
  c.outputs = {{"y", DataType::kFp32, {-1, 2}, false}, {"t", DataType::kBytes, {-1}, true}};
  c.options["delay_us"] = std::to_string(delay_us);
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

class ModelRuntimeBatchingTest : public ::testing::Test {
 protected:
  void SetUp() override { RegisterIdentityBackend(registry_); }
  std::unique_ptr<ModelRuntime> Make(ModelConfig c) {
    auto rt = ModelRuntime::Create(std::move(c), "1", "/nonexistent", registry_, &expirer_);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return rt.ok() ? std::move(*rt) : nullptr;
  }
  BackendRegistry registry_;
  Expirer expirer_;
};

TEST_F(ModelRuntimeBatchingTest, ConcurrentRequestsRunAsFewerExecutions) {
  // A long queue delay: batches close only when full, so the count of executions is exact.
  auto rt = Make(BatchingConfigOf(8, 10'000'000, 20'000));
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
  EXPECT_GT(by_size.begin()->second.infer_ns, 0u);
}

TEST_F(ModelRuntimeBatchingTest, SplitsRequestsOfSeveralRowsBack) {
  auto rt = Make(BatchingConfigOf(8, 10'000'000, 0));
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
  auto rt = Make(BatchingConfigOf(2, 10'000'000, 0));
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
  auto rt = Make(BatchingConfigOf(8, 50'000, 0));
  ASSERT_NE(rt, nullptr);
  std::promise<absl::StatusOr<InferResponse>> p;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt->Submit(Rows(7, 1), [&](auto r) { p.set_value(std::move(r)); }).ok());
  absl::StatusOr<InferResponse> r = p.get_future().get();
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectOwnRows(*r, 7, 1);
  EXPECT_GE(waited, milliseconds(50)) << "it waited max_queue_delay_us for company";
  EXPECT_LT(waited, milliseconds(5000));
  EXPECT_EQ(rt->stats().execution_count.load(), 1u);
  EXPECT_EQ(rt->stats().batch_size.counts[0].load(), 1u) << "a batch of one";
}

TEST_F(ModelRuntimeBatchingTest, ADeadlineClosesTheBatchEarly) {
  // Without the deadline these two would wait 10 s for six more requests.
  auto rt = Make(BatchingConfigOf(8, 10'000'000, 0));
  ASSERT_NE(rt, nullptr);
  std::promise<absl::StatusOr<InferResponse>> a, b;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt->Submit(Rows(1, 1), [&](auto r) { a.set_value(std::move(r)); }).ok());
  InferRequest bounded = Rows(2, 2);
  bounded.deadline = SystemClock::Get().Now() + milliseconds(200);
  ASSERT_TRUE(rt->Submit(std::move(bounded), [&](auto r) { b.set_value(std::move(r)); }).ok());
  absl::StatusOr<InferResponse> ra = a.get_future().get();
  absl::StatusOr<InferResponse> rb = b.get_future().get();
  ASSERT_TRUE(rb.ok()) << "started before its deadline: " << rb.status();
  ASSERT_TRUE(ra.ok()) << ra.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(5000));
  ExpectOwnRows(*ra, 1, 1);
  ExpectOwnRows(*rb, 2, 2);
  EXPECT_EQ(rt->stats().execution_count.load(), 1u) << "both in the batch the deadline closed";
  EXPECT_EQ(rt->stats().expired_in_queue.load(), 0u);
}

TEST_F(ModelRuntimeBatchingTest, ExpiredWhileBusyIsAnsweredAndNotComputed) {
  // The worker is busy for 300 ms; a request with a 50 ms deadline waits behind it.
  auto rt = Make(BatchingConfigOf(1, 0, 300'000));
  ASSERT_NE(rt, nullptr);
  std::promise<void> first_done;
  ASSERT_TRUE(rt->Submit(Rows(1, 1), [&](auto r) {
                  EXPECT_TRUE(r.ok());
                  first_done.set_value();
                }).ok());
  InferRequest late = Rows(2, 1);
  late.deadline = SystemClock::Get().Now() + milliseconds(50);
  std::promise<absl::Status> late_result;
  ASSERT_TRUE(rt->Submit(std::move(late), [&](auto r) { late_result.set_value(r.status()); }).ok());
  EXPECT_EQ(late_result.get_future().get().code(), absl::StatusCode::kDeadlineExceeded);
  first_done.get_future().wait();
  rt->Drain();
  EXPECT_EQ(rt->stats().execution_count.load(), 1u) << "the expired request was not computed";
  EXPECT_EQ(rt->stats().expired_in_queue.load(), 1u);
}

TEST_F(ModelRuntimeBatchingTest, RequestsAWorkerFindsExpiredLeaveTheCountsBalanced) {
  // Deadlines a few microseconds away: the idle worker, woken at once, usually finds them passed
  // before the expirer does, and answers them itself. Every answer must be counted once, so that
  // nothing is left "in flight" and a drain waits for exactly what runs.
  for (int64_t delay_us : {0, 100}) {
    auto rt = Make(BatchingConfigOf(4, delay_us, 0));
    ASSERT_NE(rt, nullptr);
    int expired = 0;
    for (int i = 0; i < 300; ++i) {
      InferRequest r = Rows(i, 1);
      r.deadline = SystemClock::Get().Now() + std::chrono::microseconds(3);
      std::promise<absl::Status> done;
      absl::Status admitted = rt->Submit(
          std::move(r), [&](absl::StatusOr<InferResponse> a) { done.set_value(a.status()); });
      if (!admitted.ok()) continue;  // the deadline passed before it was queued
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
  auto rt = Make(BatchingConfigOf(8, 30'000, 0));
  ASSERT_NE(rt, nullptr);
  // Without the optional BYTES input, the requests cannot be concatenated with those that have
  // it: they form their own batch.
  std::vector<std::promise<absl::StatusOr<InferResponse>>> answers(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(rt->Submit(Rows(i, 1, /*with_bytes=*/i % 2 == 0), [&answers, i](auto r) {
                    answers[static_cast<size_t>(i)].set_value(std::move(r));
                  }).ok());
  }
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
  auto rt = Make(BatchingConfigOf(4, 1000, 0));
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
  auto rt = Make(BatchingConfigOf(4, 5'000, 2'000, /*instances=*/2));
  ASSERT_NE(rt, nullptr);
  std::atomic<int> answered{0};
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(rt->Submit(Rows(i, 1 + i % 2), [&answered, i](absl::StatusOr<InferResponse> r) {
                    EXPECT_TRUE(r.ok()) << r.status();
                    if (r.ok()) ExpectOwnRows(*r, i, 1 + i % 2);
                    answered++;
                  }).ok());
  }
  rt->Drain();
  EXPECT_EQ(answered.load(), 30);
  EXPECT_LT(rt->stats().execution_count.load(), 30u);
  EXPECT_EQ(rt->stats().inference_count.load(), 30u);
}

}  // namespace
}  // namespace hivemesh
