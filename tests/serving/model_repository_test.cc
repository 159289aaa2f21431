#include "serving/model_repository.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "base/strings.h"
#include "serving/repository_scan.h"
#include "support/agent_process.h"

namespace hivemesh {
namespace {

using test::TempDir;
using ::testing::HasSubstr;

InferRequest OneFloat(float v = 1.f) {
  InferRequest req;
  req.model_name = "m";
  req.inputs.push_back(Tensor::Owned("INPUT0", DataType::kFp32, {1},
                                     std::string(reinterpret_cast<const char*>(&v), 4)));
  return req;
}

std::vector<std::string> Rows(const ModelRepository& repo) {
  std::vector<std::string> rows;
  for (const ModelEntry& e : repo.Index()) {
    rows.push_back(
        StrCat(e.name, "/", e.version, " ", e.state, e.reason.empty() ? "" : ": ", e.reason));
  }
  return rows;
}

class ModelRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterBuiltinBackends(registry_);
    dir_.Write("identity/config.yaml", test::IdentityModelConfig());
    dir_.Write("identity/1/.keep", "");
    dir_.Write("echo/config.yaml", test::IdentityModelConfig());
    dir_.Write("echo/1/.keep", "");
  }
  std::vector<std::string> Names(const ModelRepository& repo) {
    std::vector<std::string> names;
    for (const ModelEntry& e : repo.Index()) names.push_back(e.name);
    return names;
  }
  BackendRegistry registry_;
  TempDir dir_;
};

TEST_F(ModelRepositoryTest, LoadsEveryModelByDefault) {
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Load({.path = dir_.path()}, registry_);
  ASSERT_TRUE(repo.ok()) << repo.status();
  EXPECT_EQ(Names(**repo), (std::vector<std::string>{"echo", "identity"}));
}

TEST_F(ModelRepositoryTest, LoadsOnlyTheListedModels) {
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Load({.path = dir_.path(), .models = {"echo"}}, registry_);
  ASSERT_TRUE(repo.ok()) << repo.status();
  EXPECT_EQ(Names(**repo), (std::vector<std::string>{"echo"}));
  EXPECT_EQ((*repo)->Find("identity", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE((*repo)->Find("echo", "").ok());
}

TEST_F(ModelRepositoryTest, AnInvalidNameInTheModelsListIsAnError) {
  for (const char* bad : {"..", ".", "../echo", "a/b", ""}) {
    absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
        ModelRepository::Load({.path = dir_.path(), .models = {"echo", bad}}, registry_);
    ASSERT_EQ(repo.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(repo.status().message()), HasSubstr("models: model name '"));
  }
}

TEST_F(ModelRepositoryTest, AListedModelMissingFromTheRepositoryIsAnError) {
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Load({.path = dir_.path(), .models = {"echo", "nope"}}, registry_);
  ASSERT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(repo.status().message().find("'nope'"), absl::string_view::npos) << repo.status();
}

// A repository in one control mode, changed by hand; Poll() is called by the test (the
// interval is far away).
class RepositoryChangeTest : public ::testing::Test {
 protected:
  void SetUp() override { RegisterBuiltinBackends(registry_); }
  std::unique_ptr<ModelRepository> Open(ControlMode mode) {
    absl::StatusOr<std::unique_ptr<ModelRepository>> repo = ModelRepository::Load(
        {.path = dir_.path(), .control_mode = mode, .poll_interval = std::chrono::hours(1)},
        registry_);
    EXPECT_TRUE(repo.ok()) << repo.status();
    if (!repo.ok()) return nullptr;
    (*repo)->SetOnChange([this] { ++changes_; });
    return std::move(*repo);
  }
  std::string Default(const ModelRepository& repo) {
    RuntimePtr rt = repo.Get("m", "");
    return rt ? rt->version() : "none";
  }
  void Remove(const std::string& relative) {
    std::filesystem::remove_all(std::filesystem::path(dir_.path()) / relative);
  }
  BackendRegistry registry_;
  TempDir dir_;
  std::atomic<int> changes_{0};
};

TEST_F(RepositoryChangeTest, ThePolicyChoosesTheVersionsAndTheHighestIsTheDefault) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  for (const char* v : {"1/.keep", "2/.keep", "10/.keep"}) dir_.Write(StrCat("m/", v), "");
  dir_.Write("all/config.yaml", test::IdentityModelConfig("version_policy: all\n"));
  for (const char* v : {"1/.keep", "2/.keep"}) dir_.Write(StrCat("all/", v), "");
  dir_.Write("some/config.yaml", test::IdentityModelConfig("version_policy: {specific: [1, 3]}\n"));
  for (const char* v : {"1/.keep", "2/.keep"}) dir_.Write(StrCat("some/", v), "");
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kNone);
  ASSERT_NE(repo, nullptr);
  EXPECT_EQ(repo->Versions("m"), (std::vector<std::string>{"10"})) << "latest 1 by default";
  EXPECT_EQ(Default(*repo), "10");
  EXPECT_EQ(repo->Versions("all"), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(repo->Get("all", "")->version(), "2");
  EXPECT_EQ(repo->Versions("some"), (std::vector<std::string>{"1"}));
  EXPECT_THAT(Rows(*repo), testing::Contains(HasSubstr("some/3 UNAVAILABLE: some/3/ does not exist "
                                                       "(version_policy: specific [1, 3])")));
  EXPECT_EQ(repo->Get("m", "2"), nullptr);
  absl::StatusOr<RuntimePtr> two = repo->Find("m", "2");
  EXPECT_EQ(two.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(two.status().message()), HasSubstr("has no version '2' (versions: 10)"));
}

TEST_F(RepositoryChangeTest, PollLoadsANewVersionOnceItSettlesThenRetiresTheOld) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  dir_.Write("m/1/.keep", "");
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kPoll);
  ASSERT_NE(repo, nullptr);
  RuntimePtr v1 = repo->Get("m", "");
  ASSERT_NE(v1, nullptr);
  repo->Poll();
  EXPECT_EQ(changes_, 0) << "nothing changed";

  dir_.Write("m/2/.keep", "");
  repo->Poll();
  EXPECT_EQ(Default(*repo), "1") << "seen once: it may still be being copied in";
  repo->Poll();
  EXPECT_EQ(Default(*repo), "2");
  EXPECT_EQ(changes_, 1);
  EXPECT_TRUE(v1->retired());
  EXPECT_EQ(repo->Get("m", "1"), nullptr);
  // A request that looked version 1 up before the swap is refused in a way that says to look
  // again.
  InferRequest late = OneFloat();
  absl::Status refused = v1->Submit(std::move(late), [](absl::StatusOr<InferResponse>) {});
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(refused.message(), "version 1 of model 'm' was unloaded");

  // Version 2 removed: version 1 is still on disk and comes back.
  Remove("m/2");
  repo->Poll();
  repo->Poll();
  EXPECT_EQ(Default(*repo), "1");
  EXPECT_EQ(changes_, 2);
  // The whole model removed: it leaves the index.
  Remove("m");
  repo->Poll();
  repo->Poll();
  EXPECT_FALSE(repo->Hosts("m"));
  EXPECT_TRUE(repo->Index().empty());
  // A new model folder is picked up.
  dir_.Write("n/config.yaml", test::IdentityModelConfig());
  dir_.Write("n/4/.keep", "");
  repo->Poll();
  repo->Poll();
  EXPECT_EQ(repo->Versions("n"), (std::vector<std::string>{"4"}));
}

TEST_F(RepositoryChangeTest, ThePollTimerScansOncePerIntervalOfItsClock) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  dir_.Write("m/1/.keep", "");
  ManualClock clock;
  absl::StatusOr<std::unique_ptr<ModelRepository>> loaded =
      ModelRepository::Load({.path = dir_.path(),
                             .control_mode = ControlMode::kPoll,
                             .poll_interval = std::chrono::seconds(1)},
                            registry_, clock);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::unique_ptr<ModelRepository> repo = std::move(*loaded);
  dir_.Write("m/2/.keep", "");
  // The clock stands still: no interval passes, nothing is scanned.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(Default(*repo), "1");
  // A new version serves after two scans that saw the same folder: two intervals at least.
  int intervals = 0;
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (Default(*repo) != "2" && std::chrono::steady_clock::now() < limit) {
    clock.Advance(std::chrono::seconds(1));
    ++intervals;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Default(*repo), "2");
  EXPECT_GE(intervals, 2);
}

TEST_F(RepositoryChangeTest, AFailedReloadLeavesThePreviousVersionsServingAndSaysWhy) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  dir_.Write("m/1/.keep", "");
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kPoll);
  ASSERT_NE(repo, nullptr);
  // A broken config: version 1 keeps serving with its old config.
  dir_.Write("m/config.yaml", "backend: identity\ninputs: [{name: INPUT0, datatype: FP33}]\n");
  repo->Poll();
  repo->Poll();
  EXPECT_EQ(Default(*repo), "1");
  EXPECT_THAT(Rows(*repo),
              testing::ElementsAre(HasSubstr("m/1 READY: m/config.yaml: inputs[0].datatype")));
  // Fixed, with two instances now: the version is reloaded with the new config.
  dir_.Write("m/config.yaml", test::IdentityModelConfig("instances: 2\n"));
  repo->Poll();
  repo->Poll();
  ASSERT_NE(repo->Get("m", ""), nullptr);
  EXPECT_EQ(repo->Get("m", "")->config().instances, 2);
  EXPECT_THAT(Rows(*repo), testing::ElementsAre("m/1 READY"));
  // A new version whose backend cannot be built: version 1 keeps serving.
  dir_.Write("m/config.yaml", test::IdentityModelConfig("options: {delay_us: x}\n"));
  dir_.Write("m/2/.keep", "");
  repo->Poll();
  repo->Poll();
  EXPECT_EQ(Default(*repo), "1");
  EXPECT_EQ(repo->Get("m", "")->config().instances, 2) << "the old runtime, untouched";
  EXPECT_THAT(Rows(*repo), testing::Contains(HasSubstr("m/2 UNAVAILABLE: m/config.yaml: version 2: "
                                                       "options.delay_us: 'x'")));
  absl::StatusOr<RuntimePtr> two = repo->Find("m", "2");
  EXPECT_EQ(two.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(two.status().message()), HasSubstr("version 2 of model 'm' failed"));
}

TEST_F(RepositoryChangeTest, ExplicitUnloadAnswersInFlightRequestsFirst) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig("options: {delay_us: 300000}\n"));
  dir_.Write("m/1/.keep", "");
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kExplicit);
  ASSERT_NE(repo, nullptr);
  RuntimePtr v1 = repo->Get("m", "");
  std::promise<absl::StatusOr<InferResponse>> answer;
  std::atomic<bool> answered{false};
  ASSERT_TRUE(v1->Submit(OneFloat(7.f), [&](absl::StatusOr<InferResponse> r) {
                  answered = true;
                  answer.set_value(std::move(r));
                }).ok());
  v1.reset();
  ASSERT_TRUE(repo->UnloadModel("m").ok());
  EXPECT_TRUE(answered) << "unload returns after the request in flight was answered";
  EXPECT_TRUE(answer.get_future().get().ok());
  EXPECT_FALSE(repo->Hosts("m"));
  absl::StatusOr<RuntimePtr> gone = repo->Find("m", "");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("it was unloaded"));
  EXPECT_THAT(Rows(*repo), testing::ElementsAre("m/ UNAVAILABLE: unloaded"));
  EXPECT_EQ(repo->UnloadModel("m").code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(repo->LoadModel("m").ok());
  EXPECT_EQ(Default(*repo), "1");
  EXPECT_EQ(changes_, 2);
  EXPECT_EQ(repo->LoadModel("nope").code(), absl::StatusCode::kNotFound);
  // Async: answered on the control thread.
  std::promise<absl::Status> unloaded;
  repo->UnloadModelAsync("m", [&](absl::Status s) { unloaded.set_value(s); });
  EXPECT_TRUE(unloaded.get_future().get().ok());
  EXPECT_FALSE(repo->Hosts("m"));
}

TEST_F(RepositoryChangeTest, LoadAndUnloadNeedExplicitMode) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  dir_.Write("m/1/.keep", "");
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kPoll);
  ASSERT_NE(repo, nullptr);
  absl::Status s = repo->LoadModel("m");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model_control_mode: explicit (this node's is "
                                                  "poll)"));
  EXPECT_EQ(repo->UnloadModel("m").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(repo->Hosts("m"));
}

TEST_F(RepositoryChangeTest, AttachedModelsServeBesideTheFolderAndPollingLeavesThemAlone) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  dir_.Write("m/1/.keep", "");
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kPoll);
  ASSERT_NE(repo, nullptr);
  const std::string config = test::IdentityModelConfig();
  ASSERT_TRUE(repo->AttachModel("w", config, "workload k").ok());
  EXPECT_TRUE(repo->Hosts("w"));
  EXPECT_EQ(repo->Versions("w"), (std::vector<std::string>{"1"}));
  EXPECT_EQ(changes_, 1);
  RuntimePtr first = repo->Get("w", "");
  // The same config again changes nothing; polling twice (a settled folder) keeps it.
  ASSERT_TRUE(repo->AttachModel("w", config, "workload k").ok());
  repo->Poll();
  repo->Poll();
  EXPECT_EQ(repo->Get("w", ""), first);
  EXPECT_EQ(changes_, 1);
  // Names the folder or another workload has are refused; the repository API leaves it alone.
  absl::Status clash = repo->AttachModel("m", config, "workload k");
  EXPECT_EQ(clash.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(clash.message()), HasSubstr("by the model repository"));
  EXPECT_EQ(repo->AttachModel("w", config, "workload other").code(),
            absl::StatusCode::kAlreadyExists);
  absl::Status bad = repo->AttachModel("v", "backend: nope\n", "workload k");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("workload k: model v"));
  EXPECT_FALSE(repo->Hosts("v"));
  // A changed config reloads it; detaching stops it.
  ASSERT_TRUE(
      repo->AttachModel("w", test::IdentityModelConfig("queue_limit: 3\n"), "workload k").ok());
  EXPECT_NE(repo->Get("w", ""), first);
  first.reset();
  ASSERT_TRUE(repo->DetachModel("w").ok());
  EXPECT_FALSE(repo->Hosts("w"));
  EXPECT_EQ(repo->DetachModel("w").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(repo->Hosts("m"));
}

TEST_F(RepositoryChangeTest, TheRepositoryApiLeavesAttachedModelsAlone) {
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kExplicit);
  ASSERT_NE(repo, nullptr);
  ASSERT_TRUE(repo->AttachModel("w", test::IdentityModelConfig(), "workload k").ok());
  absl::Status unload = repo->UnloadModel("w");
  EXPECT_EQ(unload.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(unload.message()), HasSubstr("served by workload k"));
  EXPECT_EQ(repo->LoadModel("w").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(repo->Hosts("w"));
}

TEST_F(RepositoryChangeTest, FoldersWithInvalidNamesAreNeverModels) {
  for (const char* name : {"m", "bad name", "%2e%2e", "-x", ".hidden", "caf\xc3\xa9"}) {
    dir_.Write(StrCat(name, "/config.yaml"), test::IdentityModelConfig());
    dir_.Write(StrCat(name, "/1/.keep"), "");
  }
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kPoll);
  ASSERT_NE(repo, nullptr);
  EXPECT_THAT(Rows(*repo), testing::ElementsAre("m/1 READY"));
  dir_.Write("n/config.yaml", test::IdentityModelConfig());
  dir_.Write("n/1/.keep", "");
  for (int i = 0; i < 3; ++i) repo->Poll();
  EXPECT_THAT(Rows(*repo), testing::ElementsAre("m/1 READY", "n/1 READY"));
  EXPECT_FALSE(repo->Hosts("bad name"));
  EXPECT_EQ(repo->Find("%2e%2e", "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RepositoryChangeTest, InvalidNamesAreRefusedWithoutLookingAtTheFileSystem) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  dir_.Write("m/1/.keep", "");
  // A model outside the repository that a path-shaped name would reach.
  TempDir outside;
  outside.Write("evil/config.yaml", test::IdentityModelConfig());
  outside.Write("evil/1/.keep", "");
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kExplicit);
  ASSERT_NE(repo, nullptr);
  const std::string relative =
      std::filesystem::relative(std::filesystem::path(outside.path()) / "evil", dir_.path())
          .string();
  for (const std::string& name : {std::string(".."), std::string("."), std::string("../m"),
                                  relative, outside.path() + "/evil", std::string("a\0b", 3),
                                  std::string(60000, 'x'), std::string("")}) {
    for (absl::Status s : {repo->LoadModel(name), repo->UnloadModel(name)}) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name.substr(0, 40);
      EXPECT_THAT(std::string(s.message()), HasSubstr("is not valid: a model name is"));
      EXPECT_THAT(std::string(s.message()), testing::Not(HasSubstr(dir_.path())));
      EXPECT_LT(s.message().size(), 400u);
    }
  }
  EXPECT_THAT(Rows(*repo), testing::ElementsAre("m/1 READY"));
  EXPECT_EQ(changes_, 0);
}

TEST_F(RepositoryChangeTest, ClientsAreNotToldWhereTheRepositoryIs) {
  dir_.Write("m/config.yaml", test::IdentityModelConfig());
  dir_.Write("m/1/.keep", "");
  dir_.Write("broken/config.yaml", "backend: identity\ninputs: [{name: I, datatype: FP33}]\n");
  dir_.Write("broken/1/.keep", "");
  dir_.Write("empty/config.yaml", test::IdentityModelConfig());
  std::unique_ptr<ModelRepository> repo = Open(ControlMode::kExplicit);
  ASSERT_NE(repo, nullptr);
  absl::Status nope = repo->LoadModel("nope");
  EXPECT_EQ(nope.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(nope.message(), "model 'nope' is not in the model repository");
  absl::Status broken = repo->LoadModel("broken");
  EXPECT_EQ(broken.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broken.message()),
              testing::StartsWith("broken/config.yaml: inputs[0].datatype"));
  EXPECT_THAT(std::string(repo->LoadModel("empty").message()),
              testing::StartsWith("empty: no version folder"));
  EXPECT_THAT(std::string(repo->Find("broken", "").status().message()),
              HasSubstr("failed to load: broken/config.yaml:"));
  for (const std::string& row : Rows(*repo)) {
    EXPECT_THAT(row, testing::Not(HasSubstr(dir_.path()))) << row;
  }
}

TEST(RepositoryScanTest, MessagesRelativeToTheRepository) {
  const std::vector<std::string> roots = {"/srv/edge/models", "models"};
  EXPECT_EQ(RelativeToRepository("/srv/edge/models/vib/config.yaml: x", roots),
            "vib/config.yaml: x");
  EXPECT_EQ(RelativeToRepository("models/vib/1/ does not exist", roots), "vib/1/ does not exist");
  EXPECT_EQ(RelativeToRepository("can't read '/srv/edge/models/a/1/m.onnx' (or models/b/x)", roots),
            "can't read 'a/1/m.onnx' (or b/x)");
  // Only where a path starts, and only below the root.
  EXPECT_EQ(
      RelativeToRepository("/srv/edge/models2/x and other-models/x and /srv/edge/models", roots),
      "/srv/edge/models2/x and other-models/x and /srv/edge/models");
  EXPECT_EQ(RelativeToRepository("", roots), "");
  EXPECT_EQ(RelativeToRepository("/srv/edge/models/x", {}), "/srv/edge/models/x");
}

TEST(RepositoryScanTest, RootsAreEverySpellingOfTheFolderLongestFirst) {
  TempDir dir;
  const std::vector<std::string> roots = RepositoryRoots(dir.path() + "/");
  ASSERT_FALSE(roots.empty());
  EXPECT_EQ(roots.front().size(),
            std::max_element(roots.begin(), roots.end(), [](const auto& a, const auto& b) {
              return a.size() < b.size();
            })->size());
  EXPECT_THAT(roots, testing::Contains(dir.path()));
  EXPECT_TRUE(RepositoryRoots("/").empty());
  EXPECT_THAT(RepositoryRoots("models"), testing::Contains("models"));
}

}  // namespace
}  // namespace hivemesh
