#include "cli/cli_common.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hivemesh::cli {
namespace {

using ::testing::HasSubstr;

TEST(ExitCodeTest, StatusCodesMapToTheDocumentedExitCodes) {
  EXPECT_EQ(ExitCodeOf(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeOf(absl::InvalidArgumentError("bad flag")), 2);
  EXPECT_EQ(ExitCodeOf(absl::UnavailableError("refused")), 3);
  EXPECT_EQ(ExitCodeOf(absl::DeadlineExceededError("slow")), 3);
  EXPECT_EQ(ExitCodeOf(absl::UnknownError("node said no")), 1);
  EXPECT_EQ(ExitCodeOf(absl::InternalError("unreadable answer")), 1);
}

TEST(NodeAnsweredTest, CarriesTheStatusAndTheNodesErrorTextAndExitsOne) {
  HttpResult r;
  r.status = 404;
  r.body = R"({"error":"model 'x' is not served by this node"})";
  const absl::Status s = NodeAnswered("127.0.0.1:8000", r);
  EXPECT_EQ(ExitCodeOf(s), 1);
  EXPECT_EQ(s.message(),
            "the node at 127.0.0.1:8000 answered 404 Not Found: model 'x' is not served by this "
            "node");
  // A 503 from the node is an answer (1), not an unreachable node (3).
  r.status = 503;
  EXPECT_EQ(ExitCodeOf(NodeAnswered("n", r)), 1);
}

TEST(NodeErrorTextTest, JsonErrorPlainTextOrEmpty) {
  EXPECT_EQ(NodeErrorText(R"({"error":"queue full"})"), "queue full");
  EXPECT_EQ(NodeErrorText("upstream exploded\r\n"), "upstream exploded");
  EXPECT_EQ(NodeErrorText(""), "(empty body)");
  EXPECT_EQ(NodeErrorText(std::string(1000, 'x')).size(), 300u);
}

TEST(ReadInputFileTest, MissingFileIsAUsageErrorNamingIt) {
  absl::StatusOr<std::string> r = ReadInputFile("/nonexistent/input.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ExitCodeOf(r.status()), 2);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("/nonexistent/input.json"));
  absl::StatusOr<std::string> folder = ReadInputFile("/tmp");
  ASSERT_FALSE(folder.ok());
  EXPECT_EQ(ExitCodeOf(folder.status()), 2);
  EXPECT_THAT(std::string(folder.status().message()), HasSubstr("folder"));
}

}  // namespace
}  // namespace hivemesh::cli
