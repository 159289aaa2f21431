// RequestReader on its own: requests fed as a connection receives them (whole, a byte at a time,
// pipelined), framing that could be read two ways, the chunk-size line and trailer bounds, and
// bodies reserved from a memory budget.
#include "transport/http_request_reader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "base/memory_budget.h"
#include "base/strings.h"

namespace hivemesh::http_internal {
namespace {

using Step = RequestReader::Step;

// A reader and its connection's buffer.
struct Feeder {
  explicit Feeder(RequestLimits limits = {}, MemoryBudget* budget = nullptr)
      : reader(limits, budget) {
    reader.Start(&head);
  }

  // Appends `bytes` `piece` bytes at a time, feeding after each; the last step.
  Step Send(const std::string& bytes, size_t piece = 1 << 20) {
    Step step = Step::kNeedMore;
    for (size_t at = 0; at < bytes.size(); at += piece) {
      const size_t n = std::min(piece, bytes.size() - at);
      std::copy_n(bytes.data() + at, n, static_cast<char*>(buffer.prepare(n).data()));
      buffer.commit(n);
      step = FeedAll();
      if (step == Step::kRefused || step == Step::kDone) return step;
    }
    return step;
  }
  // Feeds until the reader needs more, finishes or refuses.
  Step FeedAll() {
    for (;;) {
      const Step step = reader.Feed(buffer);
      if (stream) reader.TakePiece(&streamed);
      if (step == Step::kHead) {
        ++heads;
        if (stream) reader.StreamBody();
        continue;
      }
      if (step == Step::kNeedMore) max_buffered = std::max(max_buffered, buffer.size());
      return step;
    }
  }
  std::string Header(const std::string& name) const {
    const RequestHead::Field* f = head.Find(name);
    return f == nullptr ? "<none>" : std::string(head.Value(*f));
  }

  RequestHead head;
  RequestReader reader;
  beast::flat_buffer buffer;
  int heads = 0;
  size_t max_buffered = 0;
  bool stream = false;  // each body is streamed (StreamBody) into `streamed`
  std::string streamed;
};

TEST(RequestReaderTest, ReadsRequestsWholeOrAByteAtATimeAndPipelined) {
  const std::string three =
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "GET /b HTTP/1.1\r\nHost: y\r\n\r\n"
      "POST /c HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}";
  for (size_t piece : {size_t{1}, size_t{7}, three.size()}) {
    SCOPED_TRACE(piece);
    Feeder f;
    std::vector<std::string> got;  // target, host, body of each request
    for (size_t at = 0; at < three.size(); at += piece) {
      const size_t n = std::min(piece, three.size() - at);
      std::copy_n(three.data() + at, n, static_cast<char*>(f.buffer.prepare(n).data()));
      f.buffer.commit(n);
      while (f.FeedAll() == Step::kDone) {
        got.push_back(StrCat(f.head.target(), " ", f.Header("host"), " ", *f.reader.TakeBody(),
                             f.reader.keep_alive() ? "" : " close"));
        f.reader.Start(&f.head);
      }
    }
    EXPECT_EQ(got, (std::vector<std::string>{"/a x hello", "/b y ", "/c <none> {} close"}));
    EXPECT_EQ(f.heads, 3);
    EXPECT_FALSE(f.reader.started());
  }
}

TEST(RequestReaderTest, ChunkedBodiesWithExtensionsAndTrailers) {
  const std::string request =
      "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n"
      "5;name=value;q=\"a b\"\r\nhello\r\n1\r\n!\r\n0;last\r\nX-Trailer: t\r\n"
      "Hivemesh-Origin: me\r\n\r\n";
  for (size_t piece : {size_t{1}, size_t{5}, request.size()}) {
    SCOPED_TRACE(piece);
    Feeder g;
    ASSERT_EQ(g.Send(request, piece), Step::kDone);
    EXPECT_EQ(*g.reader.TakeBody(), "hello!");
    // Trailers are read and dropped: never header fields of the request.
    EXPECT_EQ(g.Header("X-Trailer"), "<none>");
    EXPECT_EQ(g.Header("Hivemesh-Origin"), "<none>");
    EXPECT_EQ(g.heads, 1);
  }
}

TEST(RequestReaderTest, TransferEncodingOtherThanOneChunkedIsRefused) {
  const std::vector<std::string> bad = {
      "Transfer-Encoding: identity\r\n",
      "Transfer-Encoding: gzip\r\n",
      "Transfer-Encoding: xchunked\r\n",
      "Transfer-Encoding: chunked, identity\r\n",
      "Transfer-Encoding: gzip, chunked\r\n",
      "Transfer-Encoding: chunked, chunked\r\n",
      "Transfer-Encoding: chunked;q=1\r\n",
      "Transfer-Encoding: \r\n",
      "Transfer-Encoding: chunked\r\n , identity\r\n",
      "Transfer-Encoding:\r\n chunked\r\n",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
      "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: gzip\r\nContent-Length: 0\r\n",
  };
  for (const std::string& fields : bad) {
    SCOPED_TRACE(fields);
    Feeder f;
    ASSERT_EQ(f.Send("GET / HTTP/1.1\r\nHost: x\r\n" + fields + "\r\n0\r\n\r\n"), Step::kRefused);
    EXPECT_EQ(f.reader.refusal().status, 400);
    EXPECT_EQ(f.reader.refusal().reason, Rejection::kBadTransferEncoding);
    EXPECT_NE(f.reader.refusal().message.find("Transfer-Encoding"), std::string::npos)
        << f.reader.refusal().message;
    EXPECT_EQ(f.heads, 0);
  }
  // HTTP/1.0 has no chunked coding.
  Feeder old;
  ASSERT_EQ(old.Send("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            Step::kRefused);
  EXPECT_EQ(old.reader.refusal().reason, Rejection::kBadTransferEncoding);
}

TEST(RequestReaderTest, AFoldedHeaderLineIsRefused) {
  for (const std::string fields : {"X-A: b\r\n c\r\n", "X-A:\r\n c\r\n", "X-A: b\r\n\t\r\n"}) {
    SCOPED_TRACE(fields);
    Feeder f;
    ASSERT_EQ(f.Send("GET / HTTP/1.1\r\n" + fields + "\r\n"), Step::kRefused);
    EXPECT_EQ(f.reader.refusal().status, 400);
    EXPECT_EQ(f.reader.refusal().reason, Rejection::kMalformedHttp);
    EXPECT_NE(f.reader.refusal().message.find("obs-fold"), std::string::npos);
  }
}

TEST(RequestReaderTest, AnEndlessChunkSizeLineIsRefusedAtItsLimit) {
  for (size_t piece : {size_t{1}, size_t{1000}, size_t{100000}}) {
    SCOPED_TRACE(piece);
    Feeder f;
    const Step step = f.Send(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=" + std::string(300000, 'a'),
        piece);
    ASSERT_EQ(step, Step::kRefused);
    EXPECT_EQ(f.reader.refusal().status, 400);
    EXPECT_EQ(f.reader.refusal().reason, Rejection::kChunkHeaderTooLarge);
    EXPECT_NE(f.reader.refusal().message.find("4096 bytes"), std::string::npos);
    EXPECT_LE(f.max_buffered, f.reader.max_unparsed());
    EXPECT_LE(f.max_buffered, kChunkLineLimit + 4);
  }
  // A line just within the limit is fine, also after a chunk's data.
  Feeder ok;
  const std::string ext(kChunkLineLimit - 8, 'e');
  EXPECT_EQ(ok.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;" + ext +
                        "\r\na\r\n1;" + ext + "\r\nb\r\n0\r\n\r\n",
                    3),
            Step::kDone);
  EXPECT_EQ(*ok.reader.TakeBody(), "ab");
}

TEST(RequestReaderTest, EndlessTrailersAreRefusedAtTheirLimit) {
  const std::string start = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n";
  std::string trailers;
  while (trailers.size() < 300000) trailers += "X-T: " + std::string(100, 't') + "\r\n";
  for (size_t piece : {size_t{7}, size_t{4096}, size_t{1 << 20}}) {
    SCOPED_TRACE(piece);
    Feeder f;
    ASSERT_EQ(f.Send(start + trailers, piece), Step::kRefused);
    EXPECT_EQ(f.reader.refusal().status, 431);
    EXPECT_EQ(f.reader.refusal().reason, Rejection::kChunkHeaderTooLarge);
    EXPECT_NE(f.reader.refusal().message.find("64 KiB"), std::string::npos);
    EXPECT_LE(f.max_buffered, f.reader.max_unparsed());
  }
}

TEST(RequestReaderTest, HeadAndBodyLimits) {
  RequestLimits limits;
  limits.max_body_bytes = 10;
  Feeder big(limits);
  ASSERT_EQ(big.Send("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), Step::kRefused);
  EXPECT_EQ(big.reader.refusal().status, 413);
  EXPECT_EQ(big.reader.refusal().reason, Rejection::kBodyTooLarge);
  Feeder chunks(limits);
  ASSERT_EQ(chunks.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
                        "8\r\n12345678\r\n"),
            Step::kRefused);
  EXPECT_EQ(chunks.reader.refusal().status, 413);
  Feeder head;
  ASSERT_EQ(head.Send("GET / HTTP/1.1\r\nX-Big: " + std::string(70000, 'h') + "\r\n\r\n", 999),
            Step::kRefused);
  EXPECT_EQ(head.reader.refusal().status, 431);
  EXPECT_EQ(head.reader.refusal().reason, Rejection::kHeaderTooLarge);
  EXPECT_LT(head.max_buffered, kHeaderLimit);
}

TEST(RequestReaderTest, AStreamedBodyHasNoLimitAndNothingIsReservedForIt) {
  RequestLimits limits;
  limits.max_body_bytes = 10;
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(1 << 20, 1024);
  // Larger than the limit and than the whole budget: it only passes through.
  const std::string data(3 << 20, 'd');
  Feeder f(limits, budget.get());
  f.stream = true;
  std::string request = StrCat("POST / HTTP/1.1\r\nContent-Length: ", data.size(), "\r\n\r\n");
  ASSERT_EQ(f.Send(request), Step::kNeedMore);
  for (size_t at = 0; at < data.size(); at += 65536) {
    ASSERT_NE(f.Send(data.substr(at, 65536)), Step::kRefused) << f.reader.refusal().message;
    EXPECT_EQ(budget->used(), 0u);
    EXPECT_LE(f.reader.body_capacity(), 65536u) << "only the piece not yet taken is held";
  }
  EXPECT_EQ(f.streamed, data);
  // Chunked, the same; the framing checks stay.
  Feeder g(limits, budget.get());
  g.stream = true;
  ASSERT_EQ(g.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "8\r\n12345678\r\n8\r\nabcdefgh\r\n0\r\n\r\n"),
            Step::kDone);
  EXPECT_EQ(g.streamed, "12345678abcdefgh");
  Feeder h(limits);
  h.stream = true;
  ASSERT_EQ(h.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=" +
                   std::string(5000, 'a') + "\r\n"),
            Step::kRefused);
  EXPECT_EQ(h.reader.refusal().reason, Rejection::kChunkHeaderTooLarge);
  // The next request on the connection is read whole again, with its limit.
  Feeder k(limits);
  k.stream = true;
  ASSERT_EQ(k.Send("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n01234567890"), Step::kDone);
  k.stream = false;
  k.reader.Start(&k.head);
  ASSERT_EQ(k.Send("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), Step::kRefused);
  EXPECT_EQ(k.reader.refusal().status, 413);
}

TEST(RequestReaderTest, ARefusalIsFinalAndAStreamedBodyIsReadWholeOnlyIfNothingWasTaken) {
  RequestLimits limits;
  limits.max_body_bytes = 10;
  // Refused: more bytes change nothing (nothing is parsed, reserved or allocated for them).
  Feeder f(limits);
  ASSERT_EQ(f.Send("POST / HTTP/1.1\r\nContent-Length: 2305843009213693952\r\n\r\n"),
            Step::kRefused);
  EXPECT_EQ(f.reader.refusal().status, 413);
  EXPECT_EQ(f.Send(std::string(4096, 'x')), Step::kRefused);
  EXPECT_EQ(f.reader.WholeBody(), Step::kRefused);
  // Streaming chosen, nothing taken yet, then read whole after all: the limit is back.
  Feeder g(limits);
  g.stream = true;  // StreamBody at the head
  ASSERT_EQ(g.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Step::kNeedMore);
  g.stream = false;
  ASSERT_EQ(g.reader.WholeBody(), Step::kHead);
  ASSERT_EQ(g.Send("8\r\n12345678\r\n8\r\n12345678\r\n"), Step::kRefused);
  EXPECT_EQ(g.reader.refusal().status, 413);
  // Some of it passed on already: it cannot be read whole.
  Feeder h(limits);
  h.stream = true;
  ASSERT_EQ(h.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n"),
            Step::kNeedMore);
  EXPECT_EQ(h.streamed, "abcd");
  EXPECT_EQ(h.reader.WholeBody(), Step::kRefused);
  EXPECT_EQ(h.reader.refusal().status, 500);
}

TEST(RequestReaderTest, BodiesAreReservedFromTheBudgetUntilTheirLastViewIsGone) {
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(1 << 20, 1024);
  std::shared_ptr<const std::string> body;
  {
    Feeder f({}, budget.get());
    const std::string data(100000, 'd');
    ASSERT_EQ(f.Send("POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + data, 4096),
              Step::kDone);
    body = f.reader.TakeBody();
    EXPECT_EQ(*body, data);
  }
  EXPECT_EQ(budget->used(), 100000u);  // the reader is gone; the body still counts
  body.reset();
  EXPECT_EQ(budget->used(), 0u);
  {
    // Chunked: the reservation grows with the buffer, and always covers it.
    Feeder f({}, budget.get());
    ASSERT_EQ(f.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Step::kNeedMore);
    std::string chunks;
    for (int i = 0; i < 100; ++i) chunks += "3e8\r\n" + std::string(1000, 'c') + "\r\n";
    for (size_t at = 0; at < chunks.size(); at += 777) {
      ASSERT_EQ(f.Send(chunks.substr(at, 777)), Step::kNeedMore);
      EXPECT_LE(f.reader.body_capacity(), f.reader.reserved());
      EXPECT_EQ(budget->used(), f.reader.reserved());
    }
    ASSERT_EQ(f.Send("0\r\n\r\n"), Step::kDone);
    body = f.reader.TakeBody();
    EXPECT_EQ(body->size(), 100000u);
  }
  EXPECT_GE(budget->used(), 100000u);
  body.reset();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(RequestReaderTest, ABodyTheBudgetCannotHoldIsRefusedBeforeItIsRead) {
  std::shared_ptr<MemoryBudget> budget = MemoryBudget::Create(1 << 20, 1024);
  absl::StatusOr<MemoryBudget::Reservation> taken = budget->Reserve(800000);
  ASSERT_TRUE(taken.ok());
  Feeder f({}, budget.get());
  ASSERT_EQ(f.Send("POST / HTTP/1.1\r\nContent-Length: 200000\r\n\r\n"), Step::kRefused);
  // Refused once the head is in (a server asks WholeBody before it answers 100-continue, so a
  // client waiting on it sends nothing).
  EXPECT_EQ(f.heads, 1);
  EXPECT_EQ(f.reader.refusal().status, 503);
  EXPECT_TRUE(f.reader.refusal().retry_after);
  EXPECT_EQ(f.reader.refusal().reason, Rejection::kMemoryBudget);
  EXPECT_NE(f.reader.refusal().message.find("memory budget"), std::string::npos);
  // Chunked: refused once it outgrows what is left.
  Feeder g({}, budget.get());
  std::string chunks = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 300; ++i) chunks += "3e8\r\n" + std::string(1000, 'c') + "\r\n";
  ASSERT_EQ(g.Send(chunks, 5000), Step::kRefused);
  EXPECT_EQ(g.reader.refusal().status, 503);
  EXPECT_EQ(g.reader.refusal().reason, Rejection::kMemoryBudget);
  EXPECT_EQ(budget->used(), 800000u);
  // A small request still fits: the budget keeps a share for them.
  Feeder small({}, budget.get());
  EXPECT_EQ(small.Send("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"), Step::kDone);
}

}  // namespace
}  // namespace hivemesh::http_internal
