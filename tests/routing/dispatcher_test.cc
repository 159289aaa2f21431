// The dispatcher without a network: a real model repository (identity models), requests handed
// in decoded, as a front end hands them. Forwarding to peers is covered by the integration tests
// (tests/integration/routing_test.cc), which run real nodes.
#include "routing/dispatcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <set>
#include <thread>

#include "base/rejections.h"
#include "base/strings.h"
#include "codec/status_codes.h"
#include "serving/model_repository.h"
#include "support/agent_process.h"

namespace hivemesh::routing {
namespace {

InferRequest TwoFor(std::string model) {
  InferRequest req;
  req.model_name = std::move(model);
  const float v = 2.f;
  req.inputs.push_back(Tensor::Owned("INPUT0", DataType::kFp32, {1},
                                     std::string(reinterpret_cast<const char*>(&v), 4)));
  return req;
}

// What the observer was told, per call.
class RecordingObserver final : public InferObserver {
 public:
  struct Seen {
    std::string model;
    InferenceRoute route;
    ModelKnown known;
    int status;
    std::string served_by;
    double seconds;
  };
  void Answered(const InferCall& call, int http_status, std::string_view served_by,
                double seconds) override {
    absl::MutexLock l(&mu_);
    seen_.push_back({call.model, call.route.load(), call.known(), http_status,
                     std::string(served_by), seconds});
  }
  std::vector<Seen> seen() const {
    absl::MutexLock l(&mu_);
    return seen_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.Write("m/config.yaml", test::IdentityModelConfig("instances: 2\nqueue_limit: 100000\n"));
    dir_.Write("m/1/.keep", "");
    RegisterBuiltinBackends(backends_);
    absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
        ModelRepository::Load({.path = dir_.path(),
                               .control_mode = ControlMode::kPoll,
                               .poll_interval = std::chrono::hours(1)},
                              backends_);
    ASSERT_TRUE(repo.ok()) << repo.status();
    repo_ = *std::move(repo);
    dispatcher_ = std::make_unique<Dispatcher>("node-a", repo_.get(), /*forwarder=*/nullptr,
                                               &rejections_, &observer_, clock_);
  }

  struct Answer {
    absl::StatusOr<InferResponse> result;
    bool served_here = false;
    bool decoded = false;  // the decoder was asked
    const ModelConfig* config = nullptr;
  };
  // Infers `req` and waits for the answer; the call is finished with the answer's status, as a
  // front end does.
  Answer Infer(InferRequest req, int hops = 0, absl::Status decode_error = absl::OkStatus()) {
    std::shared_ptr<InferCall> call =
        dispatcher_->NewCall(req.model_name, "trace-1", clock_.Now(), Protocol::kGrpc);
    call->hops = hops;
    const std::string version = req.model_version;
    Answer a{absl::UnknownError("unanswered")};
    auto decode = [&](const ModelConfig* config,
                      const std::string&) -> absl::StatusOr<DecodedInfer> {
      a.decoded = true;
      a.config = config;
      if (!decode_error.ok()) return decode_error;
      return DecodedInfer{std::move(req), false};
    };
    std::promise<void> answered;
    dispatcher_->Infer(call, version, decode,
                       [&, call](absl::StatusOr<InferResponse> r, const RuntimePtr& served) {
                         a.served_here = served != nullptr;
                         dispatcher_->Finish(*call, HttpStatusFor(r.status()),
                                             r.ok() ? std::string_view(r->served_by) : "");
                         a.result = std::move(r);
                         answered.set_value();
                       });
    answered.get_future().wait();
    return a;
  }

  test::TempDir dir_;
  BackendRegistry backends_;
  std::unique_ptr<ModelRepository> repo_;
  Rejections rejections_;
  RecordingObserver observer_;
  ManualClock clock_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(DispatcherTest, AModelHostedHereIsServedHereAndNamesThisNode) {
  Answer a = Infer(TwoFor("m"));
  ASSERT_TRUE(a.result.ok()) << a.result.status();
  EXPECT_TRUE(a.served_here);
  EXPECT_EQ(a.result->served_by, "node-a");
  EXPECT_EQ(a.result->model_version, "1");
  ASSERT_NE(a.config, nullptr);  // decoded knowing the model's config
  EXPECT_EQ(a.config->name, "m");
  std::vector<RecordingObserver::Seen> seen = observer_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].route, InferenceRoute::kLocal);
  EXPECT_EQ(seen[0].known, ModelKnown::kHere);
  EXPECT_EQ(seen[0].status, 200);
  EXPECT_EQ(seen[0].served_by, "node-a");
}

TEST_F(DispatcherTest, TheObserverMeasuresOnTheDispatchersClock) {
  std::shared_ptr<InferCall> call = dispatcher_->NewCall("m", "t", clock_.Now(), Protocol::kRest);
  clock_.Advance(std::chrono::milliseconds(250));
  dispatcher_->Finish(*call, 503, "");
  std::vector<RecordingObserver::Seen> seen = observer_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_DOUBLE_EQ(seen[0].seconds, 0.25);
  EXPECT_EQ(seen[0].status, 503);
}

TEST_F(DispatcherTest, AModelNobodyServesIsNotFoundWithoutAMesh) {
  Answer a = Infer(TwoFor("nope"));
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(a.served_here);
  EXPECT_FALSE(a.decoded);  // nothing to decode for: no node serves it
  std::vector<RecordingObserver::Seen> seen = observer_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].known, ModelKnown::kUnknown);
}

TEST_F(DispatcherTest, AnInvalidModelNameIsRefusedAndCounted) {
  Answer a = Infer(TwoFor("../etc"));
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(a.decoded);
  EXPECT_EQ(rejections_.count(Rejection::kBadModelName), 1u);
}

TEST_F(DispatcherTest, AVersionThisNodeLacksSaysWhichItHas) {
  InferRequest req = TwoFor("m");
  req.model_version = "7";
  Answer a = Infer(std::move(req));
  EXPECT_EQ(a.result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(a.result.status().message().find("1"), std::string_view::npos) << a.result.status();
  std::vector<RecordingObserver::Seen> seen = observer_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].known, ModelKnown::kHere);  // the model is known here, not that version
}

TEST_F(DispatcherTest, ADecodeErrorIsTheAnswerAndNothingIsSubmitted) {
  Answer a = Infer(TwoFor("m"), /*hops=*/0, absl::InvalidArgumentError("bad tensor"));
  EXPECT_EQ(a.result.status().message(), "bad tensor");
  EXPECT_FALSE(a.served_here);
  EXPECT_EQ(repo_->Get("m", "")->stats().inference_count.load(), 0u);
}

TEST_F(DispatcherTest, ForwardedWorkIsRefusedOnceTheNodeDrains) {
  Answer before = Infer(TwoFor("m"), /*hops=*/1);
  ASSERT_TRUE(before.result.ok()) << before.result.status();
  dispatcher_->RefuseForwarded();
  Answer after = Infer(TwoFor("m"), /*hops=*/1);
  EXPECT_EQ(after.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(after.result.status().message().find("draining"), std::string_view::npos);
  Answer client = Infer(TwoFor("m"));  // a client's request is still served
  EXPECT_TRUE(client.result.ok()) << client.result.status();
  std::vector<RecordingObserver::Seen> seen = observer_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].route, InferenceRoute::kForwardedIn);
  EXPECT_EQ(seen[1].route, InferenceRoute::kForwardedIn);
  EXPECT_EQ(seen[2].route, InferenceRoute::kLocal);
}

TEST_F(DispatcherTest, TheLoadReportCarriesTheServersTimeOnItsClock) {
  const SteadyTime received = clock_.Now();
  clock_.Advance(std::chrono::microseconds(1500));
  const std::string report = dispatcher_->LoadReport(*repo_->Get("m", ""), received);
  // "<queued> <running> <instances> <service_us> <server_us>"
  std::vector<std::string_view> fields = Split(report, ' ');
  ASSERT_EQ(fields.size(), 5u) << report;
  EXPECT_EQ(fields[2], "2");
  EXPECT_EQ(fields[4], "1500");
}

// Versions swapped under a hammer of in-process inferences: every request is answered
// successfully, also those that looked a version up an instant before it was retired.
TEST_F(DispatcherTest, SwappingVersionsUnderLoadFailsNoRequest) {
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  uint64_t ok = 0;
  std::vector<std::string> errors;
  std::set<std::string> versions;
  auto client = [&] {
    while (!stop.load()) {
      Answer a = Infer(TwoFor("m"));
      absl::MutexLock l(&mu);
      if (a.result.ok()) {
        ++ok;
        versions.insert(a.result->model_version);
      } else {
        errors.push_back(std::string(a.result.status().message()));
      }
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) clients.emplace_back(client);
  // Version 2 added, then removed (1 serves again), over and over; each change takes two polls.
  // The swaps go on until requests were answered by both versions (or a generous bound).
  const std::filesystem::path two = std::filesystem::path(dir_.path()) / "m" / "2";
  for (int round = 0; round < 2000; ++round) {
    dir_.Write("m/2/.keep", "");
    repo_->Poll();
    repo_->Poll();
    ASSERT_EQ(repo_->Get("m", "")->version(), "2");
    std::filesystem::remove_all(two);
    repo_->Poll();
    repo_->Poll();
    ASSERT_EQ(repo_->Get("m", "")->version(), "1");
    absl::MutexLock l(&mu);
    if (round >= 100 && versions.size() == 2) break;
  }
  stop = true;
  for (std::thread& t : clients) t.join();
  absl::MutexLock l(&mu);
  EXPECT_TRUE(errors.empty()) << errors.size() << " failed, e.g. " << errors.front();
  EXPECT_EQ(versions, (std::set<std::string>{"1", "2"}));
  EXPECT_GT(ok, 0u);
}

}  // namespace
}  // namespace hivemesh::routing
