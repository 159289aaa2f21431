#include "membership/stream_frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

namespace hivemesh::membership {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
const Recipient kServer = Recipient::Address("10.0.0.2:7946");

Keyring TestRing(char fill = 'k') {
  absl::StatusOr<Keyring> ring = Keyring::Create({std::string(32, fill)}, "test-cluster");
  EXPECT_TRUE(ring.ok()) << ring.status();
  return *ring;
}

// Feeds `wire` to `reader` exactly as a socket would: each NextRead() filled from the front of
// what is left, until the reader has a frame, a notice, an error, or wants more than is left.
struct Fed {
  absl::StatusOr<FrameReader::Result> result = FrameReader::Result::kNeedMore;
  DropReason why = DropReason::kMalformed;
  size_t consumed = 0;
  size_t largest_read = 0;
  // The budget held when each NextRead() was asked, and the bytes consumed by then.
  std::vector<std::pair<uint64_t, size_t>> held;
};

Fed Feed(FrameReader& reader, Envelope& envelope, const Recipient& expected, std::string_view wire,
         DropCounters& drops, const std::shared_ptr<MemoryBudget>& budget = nullptr) {
  Fed fed;
  while (true) {
    absl::StatusOr<std::span<char>> into = reader.NextRead(drops, &fed.why);
    if (!into.ok()) {
      fed.result = into.status();
      return fed;
    }
    if (budget) fed.held.emplace_back(budget->used(), fed.consumed);
    fed.largest_read = std::max(fed.largest_read, into->size());
    EXPECT_GE(into->size(), 1u);
    EXPECT_LE(into->size(), kMaxRead);
    if (wire.size() - fed.consumed < into->size()) return fed;  // waits for more bytes
    std::memcpy(into->data(), wire.data() + fed.consumed, into->size());
    fed.consumed += into->size();
    fed.result = reader.Consume(envelope, expected, kNow, drops, &fed.why);
    if (!fed.result.ok() || *fed.result != FrameReader::Result::kNeedMore) return fed;
  }
}

std::string Payload(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>('a' + i % 23);
  return out;
}

TEST(StreamFrameTest, SealedFramesOfEverySizeRoundTrip) {
  for (size_t size : {size_t{0}, size_t{1}, kChunkBytes - 1, kChunkBytes, kChunkBytes + 1,
                      3 * kChunkBytes + 17, size_t{3} << 20}) {
    Envelope client(TestRing(), 1);
    Envelope server(TestRing(), 2);
    const std::string payload = Payload(size);
    uint64_t counter = 99;
    const std::string wire = EncodeFrame(client, payload, kServer, kNow, &counter);
    EXPECT_EQ(wire.substr(0, 4), std::string("HM\x02S", 4));
    const size_t chunks = (size + kChunkBytes - 1) / kChunkBytes;
    EXPECT_EQ(wire.size(),
              4 + 2 + server.overhead(kServer) + 4 + size + chunks * Envelope::kChunkOverhead);
    FrameReader reader(16 << 20, MemoryBudget::Reservation());
    DropCounters drops;
    Fed fed = Feed(reader, server, kServer, wire, drops);
    ASSERT_TRUE(fed.result.ok()) << size << ": " << fed.result.status();
    ASSERT_EQ(*fed.result, FrameReader::Result::kFrame) << size;
    EXPECT_EQ(fed.consumed, wire.size());
    EXPECT_EQ(reader.bytes_read(), wire.size());
    Opened frame = reader.TakeFrame();
    EXPECT_EQ(frame.payload, payload) << size;
    EXPECT_EQ(frame.sender, 1u);
    EXPECT_EQ(frame.counter, counter);
    EXPECT_EQ(drops.total() + server.drops().total(), 0u);
  }
}

TEST(StreamFrameTest, PlaintextFramesRoundTrip) {
  for (size_t size : {size_t{0}, size_t{5}, 2 * kChunkBytes + 3}) {
    Envelope client(std::nullopt, 1);
    Envelope server(std::nullopt, 2);
    const std::string payload = Payload(size);
    const std::string wire = EncodeFrame(client, payload, kServer, kNow);
    ASSERT_EQ(wire.size(), 8 + size);
    EXPECT_EQ(wire.substr(0, 4), std::string("HM\x02P", 4));
    FrameReader reader(1 << 20, MemoryBudget::Reservation());
    DropCounters drops;
    Fed fed = Feed(reader, server, kServer, wire, drops);
    ASSERT_TRUE(fed.result.ok()) << fed.result.status();
    ASSERT_EQ(*fed.result, FrameReader::Result::kFrame);
    EXPECT_EQ(reader.TakeFrame().payload, payload);
  }
}

TEST(StreamFrameTest, AKeyedReaderHoldsNothingBeforeTheHeadAuthenticates) {
  Envelope server(TestRing(), 2);
  auto budget = MemoryBudget::Create(32 << 20);
  // A head no key sealed, of the largest length a head may have: read in full (a few hundred
  // bytes), refused, nothing reserved.
  std::string wire("HM\x02S", 4);
  wire += static_cast<char>(kMaxSealedHead >> 8);
  wire += static_cast<char>(kMaxSealedHead & 0xff);
  wire += std::string(kMaxSealedHead, 'x');
  FrameReader reader(16 << 20, *budget->Reserve(0));
  DropCounters drops;
  Fed fed = Feed(reader, server, kServer, wire, drops, budget);
  ASSERT_FALSE(fed.result.ok());
  EXPECT_EQ(fed.why, DropReason::kUnauthenticated);
  EXPECT_LE(fed.largest_read, kMaxSealedHead);
  for (const auto& [held, consumed] : fed.held) EXPECT_EQ(held, 0u);
  EXPECT_FALSE(reader.head_done());
  EXPECT_EQ(server.drops().unauthenticated, 1u);

  // A head length outside what any key seals is refused before the head is read.
  for (size_t n : {size_t{0}, kMinSealedHead - 1, kMaxSealedHead + 1, size_t{65535}}) {
    std::string bad("HM\x02S", 4);
    bad += static_cast<char>(n >> 8);
    bad += static_cast<char>(n & 0xff);
    FrameReader r(16 << 20, *budget->Reserve(0));
    Fed f = Feed(r, server, kServer, bad, drops, budget);
    ASSERT_FALSE(f.result.ok()) << n;
    EXPECT_EQ(f.why, DropReason::kUnauthenticated) << n;
    EXPECT_EQ(f.consumed, 6u);
  }
  EXPECT_EQ(drops.unauthenticated, 4u);
  EXPECT_EQ(budget->used(), 0u);
}

TEST(StreamFrameTest, ASealedBodyIsReservedOnceItsLengthIsAuthenticated) {
  Envelope client(TestRing(), 1);
  Envelope server(TestRing(), 2);
  auto budget = MemoryBudget::Create(32 << 20);
  const std::string payload = Payload(5 << 20);
  const std::string wire = EncodeFrame(client, payload, kServer, kNow);
  FrameReader reader(16 << 20, *budget->Reserve(0));
  DropCounters drops;
  // Only the head and the first chunk arrive.
  const size_t head = 4 + 2 + server.overhead(kServer) + 4;
  Fed fed = Feed(reader, server, kServer, std::string_view(wire).substr(0, head + kMaxRead), drops,
                 budget);
  ASSERT_TRUE(fed.result.ok()) << fed.result.status();
  EXPECT_EQ(*fed.result, FrameReader::Result::kNeedMore);
  EXPECT_TRUE(reader.head_done());
  EXPECT_GE(budget->used(), payload.size());
  EXPECT_LE(budget->used(), payload.size() + kMaxRead);
}

TEST(StreamFrameTest, APlaintextBodyGrowsWithTheBytesThatArriveNotTheClaim) {
  Envelope server(std::nullopt, 2);
  auto budget = MemoryBudget::Create(32 << 20);
  std::string wire("HM\x02P", 4);
  const uint32_t claim = 16u << 20;
  for (int shift = 24; shift >= 0; shift -= 8) wire += static_cast<char>((claim >> shift) & 0xff);
  wire += std::string(300 * 1024, 'z');  // 300 KiB of the claimed 16 MiB
  FrameReader reader(16 << 20, *budget->Reserve(0));
  DropCounters drops;
  Fed fed = Feed(reader, server, kServer, wire, drops, budget);
  ASSERT_TRUE(fed.result.ok()) << fed.result.status();
  EXPECT_EQ(*fed.result, FrameReader::Result::kNeedMore);
  // Reserved (and allocated) at most twice what has arrived, plus one read.
  for (const auto& [held, consumed] : fed.held) {
    EXPECT_LE(held, 2 * consumed + kChunkBytes) << consumed;
  }
  EXPECT_LE(budget->used(), 2 * (300u * 1024) + kChunkBytes);
}

TEST(StreamFrameTest, TheBudgetRefusesFramesThatDoNotFit) {
  auto budget = MemoryBudget::Create(1 << 20);  // keeps 128 KiB for small frames
  DropCounters drops;
  {
    Envelope client(TestRing(), 1);
    Envelope server(TestRing(), 2);
    const std::string wire = EncodeFrame(client, Payload(2 << 20), kServer, kNow);
    FrameReader reader(16 << 20, *budget->Reserve(0));
    Fed fed = Feed(reader, server, kServer, wire, drops, budget);
    ASSERT_FALSE(fed.result.ok());
    EXPECT_EQ(fed.why, DropReason::kBudget);
    EXPECT_NE(fed.result.status().message().find("gossip_buffer_mb"), std::string::npos);
    EXPECT_TRUE(reader.head_done());
  }
  {
    Envelope client(std::nullopt, 1);
    Envelope server(std::nullopt, 2);
    const std::string wire = EncodeFrame(client, Payload(2 << 20), kServer, kNow);
    FrameReader reader(16 << 20, *budget->Reserve(0));
    Fed fed = Feed(reader, server, kServer, wire, drops, budget);
    ASSERT_FALSE(fed.result.ok());
    EXPECT_EQ(fed.why, DropReason::kBudget);
    EXPECT_GT(fed.consumed, 8u + 64 * 1024);  // it read what fitted first
  }
  EXPECT_EQ(drops.budget, 2u);
  EXPECT_EQ(budget->used(), 0u);  // the readers are gone: all given back
  // A small frame still fits.
  Envelope client(TestRing(), 3);
  Envelope server(TestRing(), 4);
  FrameReader reader(16 << 20, *budget->Reserve(0));
  Fed fed =
      Feed(reader, server, kServer, EncodeFrame(client, "small", kServer, kNow), drops, budget);
  ASSERT_TRUE(fed.result.ok()) << fed.result.status();
  EXPECT_EQ(*fed.result, FrameReader::Result::kFrame);
}

TEST(StreamFrameTest, FramesOverTheLimitAreRefusedBeforeTheirBody) {
  DropCounters drops;
  for (bool keyed : {false, true}) {
    Envelope client(keyed ? std::optional<Keyring>(TestRing()) : std::nullopt, 1);
    Envelope server(keyed ? std::optional<Keyring>(TestRing()) : std::nullopt, 2);
    const std::string wire = EncodeFrame(client, Payload(4096), kServer, kNow);
    FrameReader reader(4095, MemoryBudget::Reservation());
    Fed fed = Feed(reader, server, kServer, wire, drops);
    ASSERT_FALSE(fed.result.ok());
    EXPECT_EQ(fed.why, DropReason::kFrameTooLarge);
    EXPECT_NE(fed.result.status().message().find("4096 bytes"), std::string::npos);
    EXPECT_EQ(fed.consumed, wire.size() - 4096 - (keyed ? Envelope::kChunkOverhead : 0));
  }
  EXPECT_EQ(drops.frame_too_large, 2u);
}

TEST(StreamFrameTest, OtherFramingsAreRefusedNotMisread) {
  Envelope keyed(TestRing(), 2);
  Envelope plain(std::nullopt, 3);
  DropCounters drops;
  struct Case {
    std::string wire;
    Envelope* at;
    DropReason why;
  };
  const std::string v1_16mib("\x01\x00\x00\x00", 4);  // framing 1: a bare 16 MiB length
  const std::string v1_small(
      "\x00\x00\x00\x0a"
      "0123456789",
      14);
  const Case cases[] = {
      {v1_16mib, &keyed, DropReason::kBadFrame},
      {v1_16mib, &plain, DropReason::kBadFrame},
      {v1_small, &plain, DropReason::kBadFrame},
      {"GET / HTTP/1.1\r\n\r\n", &plain, DropReason::kBadFrame},
      {std::string("HM\x01P\x00\x00\x00\x01x", 9), &plain, DropReason::kBadFrame},
      {std::string("HM\x02Z", 4), &plain, DropReason::kBadFrame},
      // A plaintext frame at a keyed node: unauthenticated (it answers with the notice).
      {std::string("HM\x02P\x00\x00\x00\x01x", 9), &keyed, DropReason::kUnauthenticated},
      // A sealed frame at a node without keys.
      {std::string("HM\x02S\x00\x50", 6) + std::string(0x50, 's'), &plain, DropReason::kBadFrame},
  };
  for (const Case& c : cases) {
    FrameReader reader(16 << 20, MemoryBudget::Reservation());
    Fed fed = Feed(reader, *c.at, kServer, c.wire, drops);
    ASSERT_FALSE(fed.result.ok()) << c.wire;
    EXPECT_EQ(fed.why, c.why) << c.wire;
    EXPECT_LE(fed.consumed, 4u) << c.wire;  // decided on the preamble
    EXPECT_FALSE(fed.result.status().message().empty());
  }
  EXPECT_EQ(drops.bad_frame, 7u);
  EXPECT_EQ(drops.unauthenticated, 1u);
}

TEST(StreamFrameTest, TheNoticeIsRecognisedAndNothingElseIs) {
  const std::string_view notice = EncryptionRequiredNotice();
  EXPECT_EQ(notice.substr(0, 4), std::string_view("HM\x02"
                                                  "E",
                                                  4));
  EXPECT_LT(notice.size(), 64u);
  DropCounters drops;
  for (bool keyed : {false, true}) {
    Envelope at(keyed ? std::optional<Keyring>(TestRing()) : std::nullopt, 2);
    FrameReader reader(16 << 20, MemoryBudget::Reservation());
    Fed fed = Feed(reader, at, kServer, notice, drops);
    ASSERT_TRUE(fed.result.ok()) << fed.result.status();
    EXPECT_EQ(*fed.result, FrameReader::Result::kNotice);
    EXPECT_EQ(fed.consumed, notice.size());

    std::string altered(notice);
    altered[10] ^= 1;
    FrameReader r2(16 << 20, MemoryBudget::Reservation());
    Fed f2 = Feed(r2, at, kServer, altered, drops);
    ASSERT_FALSE(f2.result.ok());
    EXPECT_EQ(f2.why, DropReason::kBadFrame);
  }
}

TEST(StreamFrameTest, SealedHeadsAreCheckedForRecipientAndReplay) {
  Envelope client(TestRing(), 1);
  Envelope server(TestRing(), 2);
  DropCounters drops;
  const std::string wire = EncodeFrame(client, "push-pull", kServer, kNow);
  {
    FrameReader reader(16 << 20, MemoryBudget::Reservation());
    Fed fed = Feed(reader, server, Recipient::Address("10.0.0.3:7946"), wire, drops);
    ASSERT_FALSE(fed.result.ok());
    EXPECT_EQ(fed.why, DropReason::kMisdirected);
  }
  {
    FrameReader reader(16 << 20, MemoryBudget::Reservation());
    Fed fed = Feed(reader, server, kServer, wire, drops);
    ASSERT_TRUE(fed.result.ok()) << fed.result.status();
    const Opened request = reader.TakeFrame();
    // The reply is bound to the request; the client expects exactly that.
    const std::string reply =
        EncodeFrame(server, "state", Recipient::Reply(request.sender, request.counter), kNow);
    FrameReader as_request(16 << 20, MemoryBudget::Reservation());
    Fed replayed = Feed(as_request, client, Recipient::Address("10.0.0.1:7946"), reply, drops);
    ASSERT_FALSE(replayed.result.ok());
    EXPECT_EQ(replayed.why, DropReason::kMisdirected);
    FrameReader as_reply(16 << 20, MemoryBudget::Reservation());
    Fed answered =
        Feed(as_reply, client, Recipient::Reply(client.boot_id(), request.counter), reply, drops);
    ASSERT_TRUE(answered.result.ok()) << answered.result.status();
    EXPECT_EQ(as_reply.TakeFrame().payload, "state");
  }
  {
    FrameReader reader(16 << 20, MemoryBudget::Reservation());
    Fed fed = Feed(reader, server, kServer, wire, drops);
    ASSERT_FALSE(fed.result.ok());
    EXPECT_EQ(fed.why, DropReason::kReplayed);
  }
  EXPECT_EQ(server.drops().misdirected, 1u);
  EXPECT_EQ(client.drops().misdirected, 1u);
  EXPECT_EQ(server.drops().replayed, 1u);
}

TEST(StreamFrameTest, ChunksSplicedFromAnotherFrameAreRefused) {
  Envelope client(TestRing(), 1);
  Envelope server(TestRing(), 2);
  const std::string one = EncodeFrame(client, Payload(2 * kChunkBytes), kServer, kNow);
  const std::string two = EncodeFrame(client, Payload(2 * kChunkBytes), kServer, kNow);
  ASSERT_EQ(one.size(), two.size());
  // Frame two's head with frame one's chunks.
  const size_t head = one.size() - 2 * (kChunkBytes + Envelope::kChunkOverhead);
  const std::string spliced = two.substr(0, head) + one.substr(head);
  FrameReader reader(16 << 20, MemoryBudget::Reservation());
  DropCounters drops;
  Fed fed = Feed(reader, server, kServer, spliced, drops);
  ASSERT_FALSE(fed.result.ok());
  EXPECT_EQ(fed.why, DropReason::kReplayed);
  // Chunks swapped within one frame.
  Envelope server2(TestRing(), 3);
  const size_t c = kChunkBytes + Envelope::kChunkOverhead;
  const std::string swapped = one.substr(0, head) + one.substr(head + c) + one.substr(head, c);
  FrameReader reader2(16 << 20, MemoryBudget::Reservation());
  Fed fed2 = Feed(reader2, server2, kServer, swapped, drops);
  ASSERT_FALSE(fed2.result.ok());
  EXPECT_EQ(fed2.why, DropReason::kReplayed);
}

}  // namespace
}  // namespace hivemesh::membership
