#include "serving/model_repository.h"

#include <gtest/gtest.h>

#include "support/agent_process.h"

namespace hivemesh {
namespace {

using test::TempDir;

class ModelRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RegisterBuiltinBackends(registry_);
    dir_.Write("identity/config.yaml",
               "backend: identity\ninputs:\n  - {name: INPUT0, datatype: FP32, shape: [-1]}\n"
               "outputs:\n  - {name: OUTPUT0, datatype: FP32, shape: [-1]}\n");
    dir_.Write("identity/1/.keep", "");
    dir_.Write("echo/config.yaml",
               "backend: identity\ninputs:\n  - {name: INPUT0, datatype: FP32, shape: [-1]}\n"
               "outputs:\n  - {name: OUTPUT0, datatype: FP32, shape: [-1]}\n");
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

TEST_F(ModelRepositoryTest, AListedModelMissingFromTheRepositoryIsAnError) {
  absl::StatusOr<std::unique_ptr<ModelRepository>> repo =
      ModelRepository::Load({.path = dir_.path(), .models = {"echo", "nope"}}, registry_);
  ASSERT_EQ(repo.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(repo.status().message().find("'nope'"), absl::string_view::npos) << repo.status();
}

}  // namespace
}  // namespace hivemesh
