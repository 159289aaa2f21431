#include "transport/link_head.h"

#include <gtest/gtest.h>

#include <string>

namespace hivemesh {
namespace {

LinkParse Parse(std::string_view bytes, bool request, LinkHead* head, std::string* error,
                size_t max_head = 1024) {
  return ParseLinkHead(bytes, request, max_head, head, error);
}

TEST(LinkHeadTest, ParsesARequestHead) {
  const std::string bytes =
      "POST /v2/models/m/infer HTTP/1.1\r\nHost: n\r\nContent-Length: 5\r\n"
      "Hivemesh-Stream:  7 \r\n\r\nhello";
  LinkHead head;
  std::string error;
  ASSERT_EQ(Parse(bytes, true, &head, &error), LinkParse::kDone) << error;
  EXPECT_EQ(head.method, "POST");
  EXPECT_EQ(head.target, "/v2/models/m/infer");
  EXPECT_EQ(head.content_length, 5u);
  EXPECT_EQ(head.head_size, bytes.size() - 5);
  ASSERT_EQ(head.fields.size(), 3u);
  EXPECT_EQ(head.fields[2].name, "Hivemesh-Stream");
  EXPECT_EQ(head.fields[2].value, "7");  // spaces around the value are not part of it
}

TEST(LinkHeadTest, ParsesAResponseHeadWithOrWithoutAReason) {
  LinkHead head;
  std::string error;
  ASSERT_EQ(
      Parse("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n", false, &head, &error),
      LinkParse::kDone)
      << error;
  EXPECT_EQ(head.status, 503);
  EXPECT_EQ(head.content_length, 0u);
  ASSERT_EQ(Parse("HTTP/1.1 200\r\nContent-Length: 12\r\n\r\n", false, &head, &error),
            LinkParse::kDone)
      << error;
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.content_length, 12u);
  EXPECT_EQ(head.method, "");
}

TEST(LinkHeadTest, AnIncompleteHeadNeedsMoreUntilTheLimit) {
  LinkHead head;
  std::string error;
  const std::string full = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n";
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(Parse(full.substr(0, n), false, &head, &error), LinkParse::kNeedMore) << n;
  }
  EXPECT_EQ(Parse(full, false, &head, &error), LinkParse::kDone);
  // Without a blank line within the limit, no more bytes can help.
  const std::string endless = "HTTP/1.1 200 OK\r\nX: " + std::string(100, 'a');
  EXPECT_EQ(Parse(endless, false, &head, &error, 64), LinkParse::kBad);
  EXPECT_NE(error.find("over 64 bytes"), std::string::npos) << error;
}

TEST(LinkHeadTest, RejectsWhatALinkNeverCarries) {
  const char* bad_requests[] = {
      "GET /x HTTP/1.0\r\n\r\n",                                            // not 1.1
      "GET  /x HTTP/1.1\r\n\r\n",                                           // empty target
      "G(T /x HTTP/1.1\r\n\r\n",                                            // not a token
      "GET /x HTTP/1.1\r\nX: a\r\n b\r\n\r\n",                              // folded line
      "GET /x HTTP/1.1\r\nNoColon\r\n\r\n",                                 // no ':'
      "GET /x HTTP/1.1\r\nBad Name: a\r\n\r\n",                             // space in a name
      "GET /x HTTP/1.1\r\nX: a\rb\r\n\r\n",                                 // lone CR in a value
      "GET /x HTTP/1.1\r\nX: a\nb\r\n\r\n",                                 // lone LF in a value
      "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",              // chunked
      "GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",                      // not digits
      "GET /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",    // over 64 bits
      "GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",  // conflicting
  };
  for (const char* bytes : bad_requests) {
    LinkHead head;
    std::string error;
    EXPECT_EQ(Parse(bytes, true, &head, &error), LinkParse::kBad) << bytes;
    EXPECT_FALSE(error.empty()) << bytes;
  }
  const char* bad_responses[] = {
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 2x0 OK\r\n\r\n",
      "HTTP/1.0 200 OK\r\n\r\n",
      "HTTP/1.1 200OK\r\n\r\n",
      "\r\n\r\n",
  };
  for (const char* bytes : bad_responses) {
    LinkHead head;
    std::string error;
    EXPECT_EQ(Parse(bytes, false, &head, &error), LinkParse::kBad) << bytes;
  }
  // The same Content-Length twice is allowed.
  LinkHead head;
  std::string error;
  EXPECT_EQ(Parse("GET /x HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n", true, &head,
                  &error),
            LinkParse::kDone);
  EXPECT_EQ(head.content_length, 3u);
}

TEST(LinkHeadTest, ReusedHeadForgetsThePreviousMessage) {
  LinkHead head;
  std::string error;
  ASSERT_EQ(Parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nA: b\r\n\r\n", false, &head, &error),
            LinkParse::kDone);
  ASSERT_EQ(Parse("HTTP/1.1 204 No Content\r\n\r\n", false, &head, &error), LinkParse::kDone);
  EXPECT_EQ(head.status, 204);
  EXPECT_EQ(head.content_length, 0u);
  EXPECT_TRUE(head.fields.empty());
}

}  // namespace
}  // namespace hivemesh
