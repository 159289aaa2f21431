// The repository extension's request bodies: the index's ready filter and load/unload parameters.
#include "api/codec/repository_codec.h"

#include <gtest/gtest.h>

namespace hivemesh {
namespace {

TEST(RepositoryCodecTest, IndexRequest) {
  EXPECT_FALSE(DecodeRepositoryIndexRequest("")->ready_only);
  EXPECT_FALSE(DecodeRepositoryIndexRequest(" \n")->ready_only);
  EXPECT_FALSE(DecodeRepositoryIndexRequest("{}")->ready_only);
  EXPECT_TRUE(DecodeRepositoryIndexRequest(R"({"ready": true})")->ready_only);
  EXPECT_FALSE(
      DecodeRepositoryIndexRequest(R"({"repository_name": "", "ready": false})")->ready_only);
  EXPECT_EQ(DecodeRepositoryIndexRequest(R"({"ready": "yes"})").status().message(),
            "'ready' must be true or false");
  EXPECT_EQ(DecodeRepositoryIndexRequest("[true]").status().message(),
            "the request body must be a JSON object");
  EXPECT_EQ(DecodeRepositoryIndexRequest("{").status().message(),
            "the request body is not valid JSON");
}

TEST(RepositoryCodecTest, ControlParameters) {
  EXPECT_TRUE(DecodeRepositoryControlParameters("")->empty());
  EXPECT_TRUE(DecodeRepositoryControlParameters(R"({"parameters": {}})")->empty());
  EXPECT_EQ(
      *DecodeRepositoryControlParameters(R"({"parameters": {"config": "{}", "file:1/m": "x"}})"),
      (std::vector<std::string>{"config", "file:1/m"}));
  EXPECT_EQ(DecodeRepositoryControlParameters(R"({"parameters": 3})").status().message(),
            "'parameters' must be a JSON object");
  EXPECT_EQ(DecodeRepositoryControlParameters("nope").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hivemesh
