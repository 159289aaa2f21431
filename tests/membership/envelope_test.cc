#include "membership/envelope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace hivemesh::membership {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;  // a fixed wall-clock time, ms since the epoch

// Where every test packet is sent, unless a test says otherwise.
const Recipient kTo = Recipient::Address("10.0.0.2:7946");

Keyring TestRing(char fill = 'k', std::string label = "test-cluster") {
  absl::StatusOr<Keyring> ring = Keyring::Create({std::string(32, fill)}, std::move(label));
  EXPECT_TRUE(ring.ok()) << ring.status();
  return *ring;
}

// `payload` wrapped by `from` for kTo.
std::string Seal(Envelope& from, std::string_view payload, int64_t now = kNow) {
  return from.Wrap(payload, kTo, now);
}

// Unwraps and returns the drop reason, or nullopt if the packet was accepted (and then checks
// the payload).
std::optional<DropReason> Deliver(Envelope& to, const std::string& packet,
                                  const std::string& expected_payload, int64_t now = kNow) {
  DropReason why = DropReason::kMalformed;
  absl::StatusOr<Opened> opened = to.Unwrap(packet, kTo, now, &why);
  if (!opened.ok()) {
    EXPECT_FALSE(opened.status().message().empty());
    return why;
  }
  EXPECT_EQ(opened->payload, expected_payload);
  return std::nullopt;
}

TEST(EnvelopeTest, KeyedRoundTrip) {
  Envelope a(TestRing(), 0xa);
  Envelope b(TestRing(), 0xb);
  EXPECT_TRUE(a.encrypted());
  // Format, boot id, counter, time, recipient kind and length, the recipient, the seal.
  EXPECT_EQ(a.overhead(kTo), 1u + 24u + 2u + kTo.bytes().size() + 29u);
  for (const std::string& payload : {std::string(), std::string("ping"), std::string(1400, 'x')}) {
    const std::string packet = Seal(a, payload, kNow);
    EXPECT_EQ(packet.size(), payload.size() + a.overhead(kTo));
    EXPECT_EQ(Deliver(b, packet, payload), std::nullopt);
  }
  EXPECT_EQ(b.remembered_senders(), 1u);
  // And the other way.
  EXPECT_EQ(Deliver(a, Seal(b, "ack", kNow), "ack"), std::nullopt);
}

TEST(EnvelopeTest, ReplayOfTheSamePacketIsDroppedAndCounted) {
  Envelope a(TestRing(), 1);
  Envelope b(TestRing(), 2);
  const std::string packet = Seal(a, "suspect node-3", kNow);
  EXPECT_EQ(Deliver(b, packet, "suspect node-3"), std::nullopt);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Deliver(b, packet, "", kNow + 10 * i), DropReason::kReplayed);
  }
  EXPECT_EQ(b.drops().replayed, 3u);
  EXPECT_EQ(b.drops().unauthenticated + b.drops().stale + b.drops().malformed + b.drops().oversized,
            0u);
  // The error says what happened.
  const absl::Status status = b.Unwrap(packet, kTo, kNow, nullptr).status();  // `why` may be null
  EXPECT_NE(std::string(status.message()).find("replayed"), std::string::npos) << status;
  EXPECT_EQ(b.drops().replayed, 4u);
}

TEST(EnvelopeTest, ReorderedPacketsInsideTheWindowAreAcceptedOnceEach) {
  Envelope a(TestRing(), 1);
  Envelope b(TestRing(), 2);
  std::vector<std::pair<std::string, std::string>> packets;  // (packet, payload)
  for (int i = 0; i < 64; ++i) {
    const std::string payload = "msg " + std::to_string(i);
    packets.emplace_back(Seal(a, payload, kNow), payload);
  }
  std::mt19937 rng(7);
  std::shuffle(packets.begin(), packets.end(), rng);
  for (const auto& [packet, payload] : packets) {
    EXPECT_EQ(Deliver(b, packet, payload), std::nullopt) << payload;
  }
  std::shuffle(packets.begin(), packets.end(), rng);
  for (const auto& [packet, payload] : packets) {
    EXPECT_EQ(Deliver(b, packet, payload), DropReason::kReplayed) << payload;
  }
  EXPECT_EQ(b.drops().replayed, 64u);
}

TEST(EnvelopeTest, PacketsOlderThanTheWindowAreDropped) {
  Envelope a(TestRing(), 1);
  Envelope b(TestRing(), 2);
  std::vector<std::string> packets;
  for (int i = 0; i <= 100; ++i) packets.push_back(Seal(a, "p" + std::to_string(i), kNow));

  EXPECT_EQ(Deliver(b, packets[100], "p100"), std::nullopt);
  // Counter 100 - 63 is the oldest inside the window; 100 - 64 is just outside.
  EXPECT_EQ(Deliver(b, packets[37], "p37"), std::nullopt);
  EXPECT_EQ(Deliver(b, packets[36], "p36"), DropReason::kReplayed);
  EXPECT_EQ(Deliver(b, packets[0], "p0"), DropReason::kReplayed);
  EXPECT_EQ(Deliver(b, packets[99], "p99"), std::nullopt);
  EXPECT_EQ(b.drops().replayed, 2u);
}

TEST(EnvelopeTest, ALargeJumpMovesTheWholeWindow) {
  Envelope a(TestRing(), 1);
  Envelope b(TestRing(), 2);
  std::vector<std::string> packets;
  for (int i = 0; i <= 300; ++i) packets.push_back(Seal(a, "p" + std::to_string(i), kNow));
  EXPECT_EQ(Deliver(b, packets[0], "p0"), std::nullopt);
  EXPECT_EQ(Deliver(b, packets[1], "p1"), std::nullopt);
  EXPECT_EQ(Deliver(b, packets[200], "p200"), std::nullopt);  // packets 2..199 lost
  EXPECT_EQ(Deliver(b, packets[1], "p1"), DropReason::kReplayed);
  EXPECT_EQ(Deliver(b, packets[137], "p137"), std::nullopt);  // fresh bits after the shift
  EXPECT_EQ(Deliver(b, packets[199], "p199"), std::nullopt);
  EXPECT_EQ(Deliver(b, packets[199], "p199"), DropReason::kReplayed);
  EXPECT_EQ(Deliver(b, packets[201], "p201"), std::nullopt);  // shift by one keeps history
  EXPECT_EQ(Deliver(b, packets[200], "p200"), DropReason::kReplayed);
  EXPECT_EQ(Deliver(b, packets[137], "p137"), DropReason::kReplayed);
}

TEST(EnvelopeTest, ARestartedSenderWithANewBootIdIsAccepted) {
  Envelope b(TestRing(), 2);
  std::string old_packet;
  {
    Envelope a(TestRing(), 100);
    for (int i = 0; i < 10; ++i) {
      old_packet = Seal(a, "before restart", kNow);
      EXPECT_EQ(Deliver(b, old_packet, "before restart"), std::nullopt);
    }
  }
  // The restarted process draws a new boot id and counts from 0 again.
  Envelope restarted(TestRing(), 101);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(
        Deliver(b, Seal(restarted, "after restart", kNow + 1000), "after restart", kNow + 1000),
        std::nullopt);
  }
  EXPECT_EQ(b.remembered_senders(), 2u);
  // The old incarnation's packets are still recognised as replays.
  EXPECT_EQ(Deliver(b, old_packet, "", kNow + 1000), DropReason::kReplayed);
}

TEST(EnvelopeTest, TheSenderHeardFromLeastRecentlyIsForgottenFirst) {
  EnvelopeOptions options;
  options.max_senders = 2;
  ASSERT_TRUE(options.Validate().ok());
  Envelope receiver(TestRing(), 1, options);
  Envelope s1(TestRing(), 11), s2(TestRing(), 12), s3(TestRing(), 13);
  const std::string p1 = Seal(s1, "1", kNow);
  const std::string p2 = Seal(s2, "2", kNow);
  EXPECT_EQ(Deliver(receiver, p1, "1"), std::nullopt);
  EXPECT_EQ(Deliver(receiver, p2, "2"), std::nullopt);
  EXPECT_EQ(Deliver(receiver, Seal(s1, "1b", kNow), "1b"), std::nullopt);  // s1 is now newer
  EXPECT_EQ(Deliver(receiver, Seal(s3, "3", kNow), "3"), std::nullopt);    // evicts s2
  EXPECT_EQ(receiver.remembered_senders(), 2u);
  EXPECT_EQ(Deliver(receiver, p1, "1"), DropReason::kReplayed);  // s1 still remembered
  // s2's window is gone: a replay inside the clock-skew bound gets through once (documented).
  EXPECT_EQ(Deliver(receiver, p2, "2"), std::nullopt);
  EXPECT_EQ(Deliver(receiver, p2, "2"), DropReason::kReplayed);
}

TEST(EnvelopeTest, StaleAndFutureTimestampsAreDropped) {
  Envelope a(TestRing(), 1);
  Envelope b(TestRing(), 2);  // default skew: 60 s
  EXPECT_EQ(Deliver(b, Seal(a, "old", kNow - 60'001), "old"), DropReason::kStale);
  EXPECT_EQ(Deliver(b, Seal(a, "future", kNow + 60'001), "future"), DropReason::kStale);
  EXPECT_EQ(Deliver(b, Seal(a, "edge-past", kNow - 60'000), "edge-past"), std::nullopt);
  EXPECT_EQ(Deliver(b, Seal(a, "edge-future", kNow + 60'000), "edge-future"), std::nullopt);
  EXPECT_EQ(b.drops().stale, 2u);

  // A stale drop does not touch the window: the same packet delivered in time is accepted.
  const std::string late = Seal(a, "late", kNow);
  EXPECT_EQ(Deliver(b, late, "late", kNow + 120'000), DropReason::kStale);
  EXPECT_EQ(Deliver(b, late, "late", kNow), std::nullopt);

  // Extreme timestamps on either side do not overflow into "fresh".
  EXPECT_EQ(Deliver(b, Seal(a, "min", std::numeric_limits<int64_t>::min()), "min"),
            DropReason::kStale);
  EXPECT_EQ(Deliver(b, Seal(a, "max", std::numeric_limits<int64_t>::max()), "max"),
            DropReason::kStale);
  EXPECT_EQ(Deliver(b, Seal(a, "max", std::numeric_limits<int64_t>::max()), "max",
                    std::numeric_limits<int64_t>::min()),
            DropReason::kStale);
  EXPECT_EQ(b.drops().stale, 6u);
}

TEST(EnvelopeTest, SkewIsConfigurable) {
  EnvelopeOptions options;
  options.max_clock_skew = std::chrono::milliseconds(500);
  Envelope a(TestRing(), 1);
  Envelope b(TestRing(), 2, options);
  EXPECT_EQ(Deliver(b, Seal(a, "x", kNow), "x", kNow + 501), DropReason::kStale);
  EXPECT_EQ(Deliver(b, Seal(a, "y", kNow), "y", kNow + 500), std::nullopt);
}

TEST(EnvelopeTest, PlaintextIsDroppedWhenKeyed) {
  Envelope plain(std::nullopt, 1);
  Envelope keyed(TestRing(), 2);
  // A short and a long plaintext packet (the wire format's first byte is 1, like the encryption
  // version: it must still never be processed).
  for (const std::string& payload : {std::string("\x01\x01short"), std::string(200, '\x01')}) {
    EXPECT_EQ(Deliver(keyed, Seal(plain, payload, kNow), payload), DropReason::kUnauthenticated);
  }
  EXPECT_EQ(Deliver(keyed, "", ""), DropReason::kUnauthenticated);
  EXPECT_EQ(keyed.drops().unauthenticated, 3u);
}

TEST(EnvelopeTest, WrongKeyWrongLabelAndTamperingAreUnauthenticated) {
  Envelope receiver(TestRing('k', "cluster-a"), 2);
  Envelope other_key(TestRing('z', "cluster-a"), 3);
  Envelope other_cluster(TestRing('k', "cluster-b"), 4);
  EXPECT_EQ(Deliver(receiver, Seal(other_key, "x", kNow), "x"), DropReason::kUnauthenticated);
  EXPECT_EQ(Deliver(receiver, Seal(other_cluster, "x", kNow), "x"), DropReason::kUnauthenticated);

  Envelope sender(TestRing('k', "cluster-a"), 5);
  std::string packet = Seal(sender, "counter and time are authenticated", kNow);
  std::string tampered = packet;
  tampered[1 + 12 + 9] ^= 1;  // the counter's first byte (inside the ciphertext)
  EXPECT_EQ(Deliver(receiver, tampered, ""), DropReason::kUnauthenticated);
  EXPECT_EQ(Deliver(receiver, packet.substr(0, packet.size() - 1), ""),
            DropReason::kUnauthenticated);
  EXPECT_EQ(receiver.drops().unauthenticated, 4u);
  // None of that consumed the genuine packet's counter.
  EXPECT_EQ(Deliver(receiver, packet, "counter and time are authenticated"), std::nullopt);
}

TEST(EnvelopeTest, KeyRotationAcrossEnvelopes) {
  absl::StatusOr<Keyring> rotating =
      Keyring::Create({std::string(16, 'n'), std::string(32, 'k')}, "test-cluster");
  ASSERT_TRUE(rotating.ok());
  Envelope old_node(TestRing('k'), 1);
  Envelope new_node(*rotating, 2);
  EXPECT_EQ(Deliver(new_node, Seal(old_node, "old->new", kNow), "old->new"), std::nullopt);
  EXPECT_EQ(Deliver(old_node, Seal(new_node, "new->old", kNow), "new->old"),
            DropReason::kUnauthenticated);
}

// The three versions of a gossip key rotation (identity/mesh_files.h), taken by two nodes at
// different times: at every moment each opens what the other seals.
TEST(EnvelopeTest, AKeyringReplacedAtRuntimeKeepsNeighbouringVersionsTalking) {
  const std::string old_key(32, 'o'), new_key(32, 'n');
  const auto ring = [](std::vector<std::string> keys) {
    return *Keyring::Create(std::move(keys), "test-cluster");
  };
  const std::vector<std::vector<std::string>> versions = {
      {old_key}, {old_key, new_key}, {new_key, old_key}, {new_key}};
  Envelope a(ring(versions[0]), 0xa);
  Envelope b(ring(versions[0]), 0xb);
  int sent = 0;
  const auto talk = [&] {
    const std::string ab = "a->b " + std::to_string(++sent), ba = "b->a " + std::to_string(sent);
    EXPECT_EQ(Deliver(b, Seal(a, ab), ab), std::nullopt) << ab;
    EXPECT_EQ(Deliver(a, Seal(b, ba), ba), std::nullopt) << ba;
  };
  for (size_t v = 1; v < versions.size(); ++v) {
    a.SetKeyring(ring(versions[v]));  // a takes the next version first
    talk();
    b.SetKeyring(ring(versions[v]));
    talk();
  }
  // Replay windows stay across a replacement: a packet seen before is still refused.
  const std::string packet = Seal(a, "once");
  EXPECT_EQ(Deliver(b, packet, "once"), std::nullopt);
  b.SetKeyring(ring(versions.back()));
  EXPECT_EQ(Deliver(b, packet, "once"), DropReason::kReplayed);
  // Skipping a version breaks it: that is why the rotation waits for every member.
  Envelope c(ring(versions[0]), 0xc);
  EXPECT_EQ(Deliver(c, Seal(a, "new only"), "new only"), DropReason::kUnauthenticated);
}

TEST(EnvelopeTest, AuthenticatedButHeaderlessPacketIsMalformed) {
  const Keyring ring = TestRing();
  Envelope b(ring, 2);
  EXPECT_EQ(Deliver(b, ring.Seal(std::string(23, 'h')), ""), DropReason::kMalformed);
  EXPECT_EQ(Deliver(b, ring.Seal(""), ""), DropReason::kMalformed);
  EXPECT_EQ(b.drops().malformed, 2u);
}

TEST(EnvelopeTest, OwnPacketsReflectedBackAreDropped) {
  Envelope a(TestRing(), 42);
  EXPECT_EQ(Deliver(a, Seal(a, "to b", kNow), "to b"), DropReason::kReplayed);
  EXPECT_EQ(a.remembered_senders(), 0u);
}

TEST(EnvelopeTest, OversizedPacketsAreDroppedBeforeDecryption) {
  EnvelopeOptions options;
  options.max_packet_bytes = 100;
  Envelope a(TestRing(), 1);
  Envelope b(TestRing(), 2, options);
  const size_t room = 100 - a.overhead(kTo);
  const std::string fits = Seal(a, std::string(room, 'f'), kNow);
  ASSERT_EQ(fits.size(), 100u);
  EXPECT_EQ(Deliver(b, fits, std::string(room, 'f')), std::nullopt);
  EXPECT_EQ(Deliver(b, Seal(a, std::string(room + 1, 'f'), kNow), ""), DropReason::kOversized);
  // Checked first: garbage over the limit is oversized, not unauthenticated.
  EXPECT_EQ(Deliver(b, std::string(101, 'g'), ""), DropReason::kOversized);
  // The per-call limit (e.g. TCP frames) overrides the constructor's.
  DropReason why = DropReason::kMalformed;
  const std::string big = Seal(a, std::string(5000, 'b'), kNow);
  EXPECT_TRUE(b.Unwrap(big, kTo, kNow, &why, 1 << 20).ok());
  EXPECT_FALSE(b.Unwrap(Seal(a, "x", kNow), kTo, kNow, &why, 10).ok());
  EXPECT_EQ(why, DropReason::kOversized);
  EXPECT_EQ(b.drops().oversized, 3u);

  // The default limit is 64 KiB.
  Envelope d(std::nullopt, 3);
  EXPECT_TRUE(d.Unwrap(std::string(65536, 'x'), kTo, kNow, nullptr).ok());
  EXPECT_FALSE(d.Unwrap(std::string(65537, 'x'), kTo, kNow, nullptr).ok());
}

TEST(EnvelopeTest, WithoutAKeyPayloadsPassThrough) {
  Envelope a(std::nullopt, 1);
  Envelope b(std::nullopt, 2);
  EXPECT_FALSE(a.encrypted());
  EXPECT_EQ(a.overhead(kTo), 0u);
  const std::string payload = std::string("\x01\x02 gossip", 9);
  const std::string packet = Seal(a, payload, kNow);
  EXPECT_EQ(packet, payload);
  // No replay or freshness protection in plaintext mode (see envelope.h): the same packet, at
  // any time, is handed on each time.
  EXPECT_EQ(Deliver(b, packet, payload), std::nullopt);
  EXPECT_EQ(Deliver(b, packet, payload), std::nullopt);
  EXPECT_EQ(Deliver(b, packet, payload, 0), std::nullopt);
  EXPECT_EQ(Deliver(b, "", ""), std::nullopt);
  // A keyed packet is just bytes to a plaintext node; the wire decoder rejects it.
  Envelope keyed(TestRing(), 3);
  const std::string sealed = Seal(keyed, "secret", kNow);
  EXPECT_EQ(Deliver(b, sealed, sealed), std::nullopt);
  EXPECT_EQ(b.remembered_senders(), 0u);
}

TEST(EnvelopeTest, DropReasonNames) {
  EXPECT_EQ(DropReasonName(DropReason::kMalformed), "malformed");
  EXPECT_EQ(DropReasonName(DropReason::kUnauthenticated), "unauthenticated");
  EXPECT_EQ(DropReasonName(DropReason::kReplayed), "replayed");
  EXPECT_EQ(DropReasonName(DropReason::kStale), "stale");
  EXPECT_EQ(DropReasonName(DropReason::kOversized), "oversized");
  EXPECT_EQ(DropReasonName(DropReason::kMisdirected), "misdirected");
  EXPECT_EQ(DropReasonName(DropReason::kBadFrame), "bad_frame");
  EXPECT_EQ(DropReasonName(DropReason::kFrameTooLarge), "frame_too_large");
  EXPECT_EQ(DropReasonName(DropReason::kConnectionLimit), "connection_limit");
  EXPECT_EQ(DropReasonName(DropReason::kSourceConnectionLimit), "source_connection_limit");
  EXPECT_EQ(DropReasonName(DropReason::kBudget), "budget");
  EXPECT_EQ(DropReasonName(DropReason::kTimeout), "timeout");
  EXPECT_EQ(DropReasonName(DropReason::kAcceptFailed), "accept_failed");
  EXPECT_EQ(kDropReasonCount, 13u);
}

TEST(EnvelopeTest, DropCountersAddAndSumByReason) {
  DropCounters a;
  a.Add(DropReason::kMisdirected);
  a.Add(DropReason::kMisdirected);
  a.Add(DropReason::kAcceptFailed);
  EXPECT_EQ(a.misdirected, 2u);
  EXPECT_EQ(a.of(DropReason::kMisdirected), 2u);
  EXPECT_EQ(a.of(DropReason::kAcceptFailed), 1u);
  EXPECT_EQ(a.total(), 3u);
  DropCounters b;
  b.Add(DropReason::kStale);
  b += a;
  EXPECT_EQ(b.total(), 4u);
  EXPECT_EQ(b.stale, 1u);
  EXPECT_EQ(b.misdirected, 2u);
}

TEST(EnvelopeTest, APacketSealedForOneNodeIsDroppedByAnother) {
  const Recipient node_a = Recipient::Address("10.0.0.1:7946");
  const Recipient node_b = Recipient::Address("10.0.0.2:7946");
  Envelope sender(TestRing(), 1);
  Envelope a(TestRing(), 2);
  Envelope b(TestRing(), 3);
  const std::string for_a = sender.Wrap("alive node-1", node_a, kNow);
  DropReason why = DropReason::kMalformed;
  // Replayed to B: misdirected, and the message names both addresses.
  absl::StatusOr<Opened> at_b = b.Unwrap(for_a, node_b, kNow, &why);
  ASSERT_FALSE(at_b.ok());
  EXPECT_EQ(why, DropReason::kMisdirected);
  EXPECT_NE(std::string(at_b.status().message())
                .find("addressed to 10.0.0.1:7946, arrived at "
                      "10.0.0.2:7946"),
            std::string::npos)
      << at_b.status();
  EXPECT_EQ(b.drops().misdirected, 1u);
  EXPECT_EQ(b.remembered_senders(), 0u);  // a misdirected packet does not touch the window
  // A is its recipient, and gets it once (the drop at B did not use it up).
  absl::StatusOr<Opened> at_a = a.Unwrap(for_a, node_a, kNow, &why);
  ASSERT_TRUE(at_a.ok()) << at_a.status();
  EXPECT_EQ(at_a->payload, "alive node-1");
  EXPECT_EQ(at_a->sender, 1u);
  EXPECT_EQ(at_a->counter, 0u);
  // The same port on another host, another port on the same host: other recipients.
  for (const char* other : {"10.0.0.1:7947", "10.0.0.10:7946", "10.0.0.1", ""}) {
    EXPECT_FALSE(
        b.Unwrap(sender.Wrap("x", node_a, kNow), Recipient::Address(other), kNow, &why).ok());
    EXPECT_EQ(why, DropReason::kMisdirected) << other;
  }
}

TEST(EnvelopeTest, RepliesAreBoundToTheExchangeTheyAnswer) {
  const Recipient server_address = Recipient::Address("10.0.0.2:7946");
  Envelope client(TestRing(), 1);
  Envelope server(TestRing(), 2);
  Envelope other_server(TestRing(), 3);
  uint64_t counter = 99;
  const std::string request = client.Wrap("push-pull", server_address, kNow, &counter);
  EXPECT_EQ(counter, 0u);
  absl::StatusOr<Opened> got = server.Unwrap(request, server_address, kNow, nullptr);
  ASSERT_TRUE(got.ok()) << got.status();
  const Recipient reply_to = Recipient::Reply(got->sender, got->counter);
  EXPECT_EQ(reply_to, Recipient::Reply(client.boot_id(), counter));
  const std::string reply = server.Wrap("state", reply_to, kNow);

  DropReason why = DropReason::kMalformed;
  // A reply replayed as a request, to the server that sent it or to another: misdirected.
  EXPECT_FALSE(other_server.Unwrap(reply, server_address, kNow, &why).ok());
  EXPECT_EQ(why, DropReason::kMisdirected);
  // Into another exchange of the same client (its next request): misdirected.
  uint64_t next = 0;
  (void)client.Wrap("push-pull 2", server_address, kNow, &next);
  EXPECT_EQ(next, 1u);
  absl::StatusOr<Opened> wrong =
      client.Unwrap(reply, Recipient::Reply(client.boot_id(), next), kNow, &why);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(why, DropReason::kMisdirected);
  EXPECT_NE(std::string(wrong.status().message()).find("the reply to exchange"), std::string::npos);
  // A request taken for a reply: misdirected.
  EXPECT_FALSE(client
                   .Unwrap(server.Wrap("ping", Recipient::Address("10.0.0.1:7946"), kNow), reply_to,
                           kNow, &why)
                   .ok());
  EXPECT_EQ(why, DropReason::kMisdirected);
  EXPECT_EQ(client.drops().misdirected, 2u);
  // The exchange it answers takes it, once.
  absl::StatusOr<Opened> right = client.Unwrap(reply, reply_to, kNow, &why);
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ(right->payload, "state");
  EXPECT_FALSE(client.Unwrap(reply, reply_to, kNow, &why).ok());
  EXPECT_EQ(why, DropReason::kReplayed);
}

TEST(EnvelopeTest, AnotherEnvelopeFormatIsMalformed) {
  const Keyring ring = TestRing();
  Envelope b(ring, 2);
  // Format 1 (no format byte, no recipient): boot id, counter, time, payload.
  std::string v1(24, '\0');
  v1[0] = 5;
  v1 += "payload";
  EXPECT_EQ(Deliver(b, ring.Seal(v1), ""), DropReason::kMalformed);
  // A format-2 header whose recipient runs past the end.
  Envelope a(ring, 1);
  std::string packet = Seal(a, "");
  absl::StatusOr<std::string> inner = ring.Open(packet);
  ASSERT_TRUE(inner.ok());
  inner->resize(inner->size() - 1);
  EXPECT_EQ(Deliver(b, ring.Seal(*inner), ""), DropReason::kMalformed);
  EXPECT_EQ(b.drops().malformed, 2u);
}

TEST(EnvelopeTest, ChunksAreBoundToTheirFrameAndPosition) {
  Envelope sender(TestRing(), 1);
  Envelope receiver(TestRing(), 2);
  uint64_t head = 0;
  (void)sender.Wrap("head", kTo, kNow, &head);
  const std::string c0 = sender.SealChunk(head, 0, "first");
  const std::string c1 = sender.SealChunk(head, 1, "second");
  EXPECT_EQ(c0.size(), 5 + Envelope::kChunkOverhead);
  DropReason why = DropReason::kMalformed;
  absl::StatusOr<std::string> got = receiver.OpenChunk(c0, 1, head, 0, &why);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "first");
  // Out of place, from another frame or sender: a key holder's chunk, but not this one.
  EXPECT_FALSE(receiver.OpenChunk(c1, 1, head, 0, &why).ok());
  EXPECT_EQ(why, DropReason::kReplayed);
  EXPECT_FALSE(receiver.OpenChunk(c0, 1, head + 1, 0, &why).ok());
  EXPECT_EQ(why, DropReason::kReplayed);
  EXPECT_FALSE(receiver.OpenChunk(c0, 7, head, 0, &why).ok());
  EXPECT_EQ(why, DropReason::kReplayed);
  // Tampered or sealed with another key: unauthenticated.
  std::string tampered = c1;
  tampered.back() ^= 1;
  EXPECT_FALSE(receiver.OpenChunk(tampered, 1, head, 1, &why).ok());
  EXPECT_EQ(why, DropReason::kUnauthenticated);
  Envelope stranger(TestRing('z'), 1);
  EXPECT_FALSE(receiver.OpenChunk(stranger.SealChunk(head, 1, "second"), 1, head, 1, &why).ok());
  EXPECT_EQ(why, DropReason::kUnauthenticated);
  EXPECT_EQ(receiver.drops().replayed, 3u);
  EXPECT_EQ(receiver.drops().unauthenticated, 2u);
  EXPECT_TRUE(receiver.OpenChunk(c1, 1, head, 1, &why).ok());
}

TEST(EnvelopeTest, OptionsValidate) {
  EXPECT_TRUE(EnvelopeOptions{}.Validate().ok());
  EnvelopeOptions bad;
  bad.max_clock_skew = std::chrono::milliseconds(-1);
  EXPECT_FALSE(bad.Validate().ok());
  bad = {};
  bad.max_senders = 0;
  EXPECT_FALSE(bad.Validate().ok());
  bad = {};
  bad.max_packet_bytes = 0;
  EXPECT_FALSE(bad.Validate().ok());
}

TEST(EnvelopeTest, RandomBootIdsDiffer) { EXPECT_NE(RandomBootId(), RandomBootId()); }

}  // namespace
}  // namespace hivemesh::membership
