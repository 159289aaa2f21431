// Versions swapped under a hammer of in-process inferences (KServeHandler::InferDecoded, no
// network): every request is answered successfully, also those that looked a version up an
// instant before it was retired.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>

#include "api/kserve_handler.h"
#include "base/strings.h"
#include "serving/model_repository.h"
#include "support/agent_process.h"

namespace hivemesh {
namespace {

TEST(LiveReloadTest, SwappingVersionsUnderLoadFailsNoRequest) {
  test::TempDir dir;
  dir.Write("m/config.yaml", test::IdentityModelConfig("instances: 2\nqueue_limit: 100000\n"));
  dir.Write("m/1/.keep", "");
  BackendRegistry backends;
  RegisterBuiltinBackends(backends);
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Load({.path = dir.path(),
                             .control_mode = ControlMode::kPoll,
                             .poll_interval = std::chrono::hours(1)},
                            backends);
  ASSERT_TRUE(repo.ok()) << repo.status();
  KServeHandler handler(ServerIdentity{"hivemesh", "test", "node"}, repo->get());

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0};
  std::mutex mu;
  std::vector<std::string> errors;
  std::set<std::string> versions;
  auto client = [&] {
    while (!stop.load()) {
      InferRequest req;
      req.model_name = "m";
      const float v = 2.f;
      req.inputs.push_back(Tensor::Owned("INPUT0", DataType::kFp32, {1},
                                         std::string(reinterpret_cast<const char*>(&v), 4)));
      std::promise<absl::StatusOr<InferResponse>> answer;
      handler.InferDecoded(
          std::move(req), "", SystemClock::Get().Now(),
          [&](absl::StatusOr<InferResponse> r) { answer.set_value(std::move(r)); });
      absl::StatusOr<InferResponse> r = answer.get_future().get();
      std::lock_guard<std::mutex> lock(mu);
      if (r.ok()) {
        ++ok;
        versions.insert(r->model_version);
      } else {
        errors.push_back(std::string(r.status().message()));
      }
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) clients.emplace_back(client);
  // Version 2 added, then removed (1 serves again), over and over; each change takes two polls.
  const std::filesystem::path two = std::filesystem::path(dir.path()) / "m" / "2";
  for (int round = 0; round < 100; ++round) {
    dir.Write("m/2/.keep", "");
    (*repo)->Poll();
    (*repo)->Poll();
    ASSERT_EQ((*repo)->Get("m", "")->version(), "2");
    std::filesystem::remove_all(two);
    (*repo)->Poll();
    (*repo)->Poll();
    ASSERT_EQ((*repo)->Get("m", "")->version(), "1");
  }
  stop = true;
  for (std::thread& t : clients) t.join();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(errors.empty()) << errors.size() << " failed, e.g. " << errors.front();
  EXPECT_EQ(versions, (std::set<std::string>{"1", "2"}));
  EXPECT_GT(ok.load(), 1000u);
}

}  // namespace
}  // namespace hivemesh
