#include "cli/model_metadata.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hivemesh::cli {
namespace {

using ::testing::ElementsAre;

TEST(ParseModelMetadataTest, ReadsANodesAnswer) {
  absl::StatusOr<ModelMetadata> m = ParseModelMetadata(
      R"({"name":"people-detector","versions":["1"],"platform":"opencv_hog","inputs":[)"
      R"({"name":"image","datatype":"BYTES","shape":[1],"optional":true},)"
      R"({"name":"pixels","datatype":"UINT8","shape":[-1,-1,3],"optional":true}],)"
      R"("outputs":[{"name":"count","datatype":"INT32","shape":[1]}]})");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "people-detector");
  EXPECT_EQ(m->platform, "opencv_hog");
  EXPECT_THAT(m->versions, ElementsAre("1"));
  ASSERT_EQ(m->inputs.size(), 2u);
  EXPECT_EQ(m->inputs[1].name, "pixels");
  EXPECT_EQ(m->inputs[1].datatype, "UINT8");
  EXPECT_THAT(m->inputs[1].shape, ElementsAre(-1, -1, 3));
  EXPECT_TRUE(m->inputs[1].optional);
  ASSERT_EQ(m->outputs.size(), 1u);
}

TEST(ParseModelMetadataTest, UnreadableIsInternal) {
  for (const char* bad :
       {"", "{}", R"({"name":"m","inputs":[{"name":"x"}]})",
        R"({"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":["a"]}]})"}) {
    absl::StatusOr<ModelMetadata> m = ParseModelMetadata(bad);
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInternal) << bad;
  }
}

TEST(ModelPathTest, WithAndWithoutVersion) {
  EXPECT_EQ(ModelPath("identity", ""), "/v2/models/identity");
  EXPECT_EQ(ModelPath("identity", "2", "/infer"), "/v2/models/identity/versions/2/infer");
}

}  // namespace
}  // namespace hivemesh::cli
