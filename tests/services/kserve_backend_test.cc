#include "services/kserve_backend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "serving/model_config.h"

namespace hivemesh::services {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ErrorOf(const absl::Status& s) { return std::string(s.message()); }

TEST(KserveIndexTest, ServesReadyModelsWithValidNamesOnce) {
  absl::StatusOr<KserveIndex> index = ParseKserveIndex(
      R"([{"name":"b","version":"1","state":"READY"},{"name":"a"},{"name":"b","version":"2"},)"
      R"({"name":"c","state":"UNAVAILABLE","reason":"x"},{"name":"../etc"},{"version":"3"}])");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_THAT(index->ready, ElementsAre("a", "b"));
  EXPECT_THAT(index->skipped, ElementsAre("c: UNAVAILABLE", HasSubstr("not a valid model name")));
}

TEST(KserveIndexTest, BadAnswersAreRefusedAndManyModelsAreCut) {
  EXPECT_THAT(ErrorOf(ParseKserveIndex("{").status()), HasSubstr("not JSON"));
  EXPECT_THAT(ErrorOf(ParseKserveIndex(R"({"models":[]})").status()),
              HasSubstr("not a list of models"));
  EXPECT_THAT(ErrorOf(ParseKserveIndex(std::string(kMaxKserveAnswerBytes + 1, ' ')).status()),
              HasSubstr("larger than"));
  std::string many = "[";
  for (int i = 0; i < 100; ++i)
    many += (i ? "," : "") + std::string(R"({"name":"m)") + std::to_string(i) + "\"}";
  many += "]";
  absl::StatusOr<KserveIndex> index = ParseKserveIndex(many);
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->ready.size(), kMaxKserveModels);
  EXPECT_EQ(index->skipped.size(), 100 - kMaxKserveModels);
}

TEST(KserveModelConfigTest, MetadataBecomesAConfigTheNodeParses) {
  absl::StatusOr<std::string> yaml =
      KserveModelConfig(R"({"name":"scale","versions":["1"],"platform":"python",)"
                        R"("inputs":[{"name":"INPUT: 0","datatype":"FP32","shape":[-1,4]}],)"
                        R"("outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[-1,4]},)"
                        R"({"name":"label","datatype":"BYTES","shape":[1]}]})",
                        "scale", 5123, 4);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  absl::StatusOr<ModelConfig> config = ParseModelConfig(*yaml, "scale", "made");
  ASSERT_TRUE(config.ok()) << *yaml << "\n" << config.status();
  EXPECT_EQ(config->backend, "kserve");
  EXPECT_EQ(config->platform, "python");
  EXPECT_EQ(config->instances, 4);
  ASSERT_EQ(config->inputs.size(), 1u);
  EXPECT_EQ(config->inputs[0].name, "INPUT: 0");
  EXPECT_EQ(config->inputs[0].dims, (Shape{-1, 4}));
  ASSERT_EQ(config->outputs.size(), 2u);
  EXPECT_EQ(config->outputs[1].type, DataType::kBytes);
  EXPECT_EQ(config->Option("port"), "5123");
  EXPECT_EQ(config->Option("model"), "scale");
}

TEST(KserveModelConfigTest, UnusableMetadataIsRefusedNamingTheField) {
  auto error = [](std::string_view json) {
    return ErrorOf(KserveModelConfig(json, "m", 80, 1).status());
  };
  EXPECT_THAT(error(R"({"name":"other","inputs":[],"outputs":[]})"), HasSubstr("name is not 'm'"));
  EXPECT_THAT(error(R"({"name":"m","outputs":[]})"), HasSubstr("inputs: missing"));
  EXPECT_THAT(error(R"({"name":"m","inputs":[{"name":"x","datatype":"FP33","shape":[1]}]})"),
              HasSubstr("inputs[0].datatype"));
  EXPECT_THAT(error(R"({"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":[-2]}]})"),
              HasSubstr("inputs[0].shape"));
  EXPECT_THAT(error(R"({"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":[1]}],)"
                    R"("outputs":[{"datatype":"FP32","shape":[1]}]})"),
              HasSubstr("outputs[0].name: missing"));
}

}  // namespace
}  // namespace hivemesh::services
