// libFuzzer target for Envelope::Unwrap, the first code every gossip datagram meets, and for
// FrameReader, the first code every gossip TCP connection meets. The first byte picks the mode
// (its value modulo 5):
//  0: plaintext envelope: the rest (after one byte choosing a per-call size limit) must pass
//     through unchanged, or be dropped as oversized.
//  1: keyed envelope, the rest is one packet off the wire. Every error names a reason and is
//     counted; a packet accepted once (only the valid seeds get that far) is a replay the second
//     time.
//  2: keyed envelope, the rest is a sequence of records; each becomes an envelope header and
//     payload that this harness seals with the shared key (the fuzzer cannot forge tags, so
//     this is how authentic packets with arbitrary boot ids, counters, timestamps and
//     recipients reach the checks behind the seal). Every verdict is checked against a
//     reference model: the format and recipient checks, unbounded per-sender history, the
//     64-packet window rule and least-recently-used eviction of senders.
//  3: a TCP stream off the wire, read by a FrameReader (next byte: keyed or not, and the frame
//     size limit), exactly as the transport reads it. Checked: every read asks for 1..kMaxRead
//     bytes; before a keyed frame's head has authenticated, no read is longer than a sealed head
//     and nothing is reserved from the budget; a plaintext body's reservation stays within
//     twice what has arrived plus one read; every refusal names itself and is counted once; a
//     frame is never larger than the limit.
//  4: a frame this harness seals (payload size from the input, keyed or not), then one byte
//     of it changed (position and mask from the input, or none): read back, it is either the
//     original payload or refused; never another payload.
// Record (mode 2): [kind u8], then for even kinds [boot u8] [counter u8] [skew s i8]
// [recipient u8: 0 this node, 1 another address, 2 a reply] [payload length u8] [payload]
// (counter bytes >= 0x80 count down from 2^64 - 1; the timestamp is now + s seconds), for odd
// kinds [length u8] [raw inner bytes].
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "membership/envelope.h"
#include "membership/stream_frame.h"

namespace {

using hivemesh::MemoryBudget;
using hivemesh::membership::DropCounters;
using hivemesh::membership::DropReason;
using hivemesh::membership::EncodeFrame;
using hivemesh::membership::Envelope;
using hivemesh::membership::EnvelopeOptions;
using hivemesh::membership::FrameReader;
using hivemesh::membership::kChunkBytes;
using hivemesh::membership::Keyring;
using hivemesh::membership::kMaxRead;
using hivemesh::membership::kMaxSealedHead;
using hivemesh::membership::Opened;
using hivemesh::membership::Recipient;

// The seed corpus (tests/fuzz/corpus/envelope) was sealed with this key and label, at this
// time, for this recipient.
constexpr int64_t kNow = 1'700'000'000'000;
constexpr uint64_t kOwnBootId = 0;
constexpr size_t kMaxSenders = 4;
const Recipient& To() {
  static const Recipient* to = new Recipient(Recipient::Address("10.0.0.2:7946"));
  return *to;
}

const Keyring& FuzzKeyring() {
  static const Keyring* ring = [] {
    absl::StatusOr<Keyring> r = Keyring::Create({std::string(32, '\x42')}, "fuzz");
    if (!r.ok()) __builtin_trap();
    return new Keyring(*r);
  }();
  return *ring;
}

uint64_t GetU64(std::string_view in) {
  uint64_t v = 0;
  std::memcpy(&v, in.data(), 8);  // little-endian host (x86-64, arm64)
  return v;
}

void PutU64(std::string& out, uint64_t v) {
  char bytes[8];
  std::memcpy(bytes, &v, 8);
  out.append(bytes, 8);
}

// The envelope's rules, written the obvious way.
class Model {
 public:
  std::optional<DropReason> Expect(std::string_view inner) {
    if (inner.size() < Envelope::kHeaderBytes || inner[0] != Envelope::kFormat) {
      return DropReason::kMalformed;
    }
    const uint64_t boot = GetU64(inner.substr(1, 8));
    const uint64_t counter = GetU64(inner.substr(9, 8));
    const auto ts = static_cast<int64_t>(GetU64(inner.substr(17, 8)));
    const auto kind = static_cast<uint8_t>(inner[25]);
    const auto to_len = static_cast<uint8_t>(inner[26]);
    if (inner.size() < Envelope::kHeaderBytes + to_len) return DropReason::kMalformed;
    const __int128 diff = static_cast<__int128>(kNow) - ts;
    if (diff > 60000 || diff < -60000) return DropReason::kStale;
    if (boot == kOwnBootId) return DropReason::kReplayed;
    if (kind != static_cast<uint8_t>(To().kind()) ||
        inner.substr(Envelope::kHeaderBytes, to_len) != To().bytes()) {
      return DropReason::kMisdirected;
    }
    ++tick_;
    auto it = senders_.find(boot);
    if (it == senders_.end()) {
      if (senders_.size() >= kMaxSenders) {
        auto oldest = senders_.begin();
        for (auto s = senders_.begin(); s != senders_.end(); ++s) {
          if (s->second.last_use < oldest->second.last_use) oldest = s;
        }
        senders_.erase(oldest);
      }
      senders_[boot] = Sender{{counter}, counter, tick_};
      return std::nullopt;
    }
    Sender& s = it->second;
    if (counter <= s.top && (s.top - counter >= Envelope::kReplayWindow || s.seen.count(counter))) {
      return DropReason::kReplayed;
    }
    s.seen.insert(counter);
    if (counter > s.top) s.top = counter;
    s.last_use = tick_;
    return std::nullopt;
  }

 private:
  struct Sender {
    std::set<uint64_t> seen;
    uint64_t top;
    uint64_t last_use;
  };
  std::map<uint64_t, Sender> senders_;
  uint64_t tick_ = 0;
};

void CheckVerdict(const absl::StatusOr<Opened>& got, DropReason why,
                  std::optional<DropReason> expected, std::string_view inner) {
  if (expected.has_value()) {
    if (got.ok() || why != *expected || got.status().message().empty()) __builtin_trap();
  } else {
    const size_t header = Envelope::kHeaderBytes + static_cast<uint8_t>(inner[26]);
    if (!got.ok() || got->payload != inner.substr(header)) __builtin_trap();
  }
}

int Records(std::string_view rest) {
  EnvelopeOptions options;
  options.max_senders = kMaxSenders;
  Envelope envelope(FuzzKeyring(), kOwnBootId, options);
  DropReason why = DropReason::kMalformed;
  Model model;
  uint64_t drops = 0;
  while (!rest.empty()) {
    const auto kind = static_cast<uint8_t>(rest[0]);
    rest.remove_prefix(1);
    std::string inner;
    if (kind % 2 == 0) {
      if (rest.size() < 5) break;
      const auto boot = static_cast<uint8_t>(rest[0]);
      const auto c = static_cast<uint8_t>(rest[1]);
      const auto skew_s = static_cast<int8_t>(rest[2]);
      const auto recipient = static_cast<uint8_t>(rest[3]) % 3;
      const size_t payload_len = static_cast<uint8_t>(rest[4]);
      rest.remove_prefix(5);
      if (rest.size() < payload_len) break;
      const uint64_t counter = c >= 0x80 ? UINT64_MAX - (c - 0x80) : c;
      const Recipient to = recipient == 0   ? To()
                           : recipient == 1 ? Recipient::Address("10.0.0.3:7946")
                                            : Recipient::Reply(boot, counter);
      inner.push_back(static_cast<char>(Envelope::kFormat));
      PutU64(inner, boot);
      PutU64(inner, counter);
      PutU64(inner, static_cast<uint64_t>(kNow + int64_t{skew_s} * 1000));
      inner.push_back(static_cast<char>(to.kind()));
      inner.push_back(static_cast<char>(to.bytes().size()));
      inner.append(to.bytes());
      inner.append(rest.substr(0, payload_len));
      rest.remove_prefix(payload_len);
    } else {
      if (rest.empty()) break;
      const size_t len = static_cast<uint8_t>(rest[0]);
      rest.remove_prefix(1);
      if (rest.size() < len) break;
      inner = std::string(rest.substr(0, len));
      rest.remove_prefix(len);
    }
    const std::optional<DropReason> expected = model.Expect(inner);
    absl::StatusOr<Opened> got = envelope.Unwrap(FuzzKeyring().Seal(inner), To(), kNow, &why);
    CheckVerdict(got, why, expected, inner);
    if (expected.has_value()) ++drops;
    if (envelope.drops().total() != drops || envelope.remembered_senders() > kMaxSenders) {
      __builtin_trap();
    }
  }
  return 0;
}

// Feeds `wire` to a FrameReader as a socket would, checking the invariants of mode 3. Returns
// the result, or nullopt if the reader still wants bytes.
std::optional<absl::StatusOr<FrameReader::Result>> ReadStream(FrameReader& reader,
                                                              Envelope& envelope,
                                                              std::string_view wire,
                                                              const MemoryBudget& budget,
                                                              size_t max_frame) {
  DropCounters drops;
  size_t consumed = 0;
  while (true) {
    const uint64_t drops_before = drops.total() + envelope.drops().total();
    DropReason why = DropReason::kMalformed;
    absl::StatusOr<std::span<char>> into = reader.NextRead(drops, &why);
    if (!into.ok()) {
      if (into.status().message().empty() ||
          drops.total() + envelope.drops().total() != drops_before + 1) {
        __builtin_trap();
      }
      return absl::StatusOr<FrameReader::Result>(into.status());
    }
    if (into->empty() || into->size() > kMaxRead) __builtin_trap();
    if (!reader.head_done()) {
      if (into->size() > kMaxSealedHead || budget.used() != 0) __builtin_trap();
    } else if (!envelope.encrypted() && budget.used() > 2 * consumed + kChunkBytes) {
      __builtin_trap();
    }
    if (wire.size() - consumed < into->size()) return std::nullopt;
    std::memcpy(into->data(), wire.data() + consumed, into->size());
    consumed += into->size();
    absl::StatusOr<FrameReader::Result> r = reader.Consume(envelope, To(), kNow, drops, &why);
    if (!r.ok()) {
      if (r.status().message().empty() ||
          drops.total() + envelope.drops().total() != drops_before + 1) {
        __builtin_trap();
      }
      return r;
    }
    if (drops.total() + envelope.drops().total() != drops_before) __builtin_trap();
    if (*r == FrameReader::Result::kFrame) {
      if (reader.TakeFrame().payload.size() > max_frame) __builtin_trap();
      return r;
    }
    if (*r == FrameReader::Result::kNotice) return r;
  }
}

int Stream(std::string_view rest) {
  if (rest.empty()) return 0;
  const auto flags = static_cast<uint8_t>(rest[0]);
  rest.remove_prefix(1);
  const bool keyed = flags & 1;
  const size_t max_frame = size_t{1} << (10 + (flags >> 1) % 12);  // 1 KiB .. 2 MiB
  auto budget = MemoryBudget::Create(4 << 20);
  Envelope envelope(keyed ? std::optional<Keyring>(FuzzKeyring()) : std::nullopt, kOwnBootId);
  FrameReader reader(max_frame, *budget->Reserve(0));
  (void)ReadStream(reader, envelope, rest, *budget, max_frame);
  return 0;
}

int RoundTrip(std::string_view rest) {
  if (rest.size() < 6) return 0;
  const bool keyed = rest[0] & 1;
  const size_t size = (static_cast<uint8_t>(rest[1]) << 10 | static_cast<uint8_t>(rest[2])) %
                      (3 * kChunkBytes + 100);
  const size_t position = static_cast<uint8_t>(rest[3]) << 8 | static_cast<uint8_t>(rest[4]);
  const auto mask = static_cast<uint8_t>(rest[5]);
  rest.remove_prefix(6);
  std::string payload(size, '\0');
  for (size_t i = 0; i < size; ++i) payload[i] = rest.empty() ? 'p' : rest[i % rest.size()];
  const std::optional<Keyring> ring = keyed ? std::optional<Keyring>(FuzzKeyring()) : std::nullopt;
  Envelope sender(ring, 1);
  Envelope receiver(ring, kOwnBootId);
  std::string wire = EncodeFrame(sender, payload, To(), kNow);
  const bool changed = mask != 0 && position < wire.size();
  if (changed) wire[position] = static_cast<char>(wire[position] ^ mask);
  auto budget = MemoryBudget::Create(4 << 20);
  FrameReader reader(1 << 20, *budget->Reserve(0));
  DropCounters drops;
  size_t consumed = 0;
  while (true) {
    DropReason why = DropReason::kMalformed;
    absl::StatusOr<std::span<char>> into = reader.NextRead(drops, &why);
    if (!into.ok()) {
      if (!changed) __builtin_trap();
      return 0;
    }
    if (wire.size() - consumed < into->size()) {
      if (!changed) __builtin_trap();  // an intact frame is read to its end
      return 0;
    }
    std::memcpy(into->data(), wire.data() + consumed, into->size());
    consumed += into->size();
    absl::StatusOr<FrameReader::Result> r = reader.Consume(receiver, To(), kNow, drops, &why);
    if (!r.ok()) {
      if (!changed) __builtin_trap();
      return 0;
    }
    if (*r == FrameReader::Result::kNotice) {
      if (!changed) __builtin_trap();
      return 0;
    }
    if (*r == FrameReader::Result::kFrame) {
      const std::string got = reader.TakeFrame().payload;
      // Sealed: a change anywhere is refused. Plaintext cannot tell; only the framing is
      // checked, and what it yields is the bytes it was sent.
      if (keyed && changed) __builtin_trap();
      if (!changed && (got != payload || consumed != wire.size())) __builtin_trap();
      return 0;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 5;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  DropReason why = DropReason::kMalformed;

  if (mode == 0) {
    if (rest.empty()) return 0;
    const size_t limit = 1 + static_cast<size_t>(static_cast<uint8_t>(rest[0])) * 16;
    rest.remove_prefix(1);
    Envelope plain(std::nullopt, kOwnBootId);
    absl::StatusOr<Opened> got = plain.Unwrap(rest, To(), kNow, &why, limit);
    if (rest.size() > limit) {
      if (got.ok() || why != DropReason::kOversized || plain.drops().oversized != 1) {
        __builtin_trap();
      }
    } else if (!got.ok() || got->payload != rest) {
      __builtin_trap();
    }
    return 0;
  }
  if (mode == 2) return Records(rest);
  if (mode == 3) return Stream(rest);
  if (mode == 4) return RoundTrip(rest);

  EnvelopeOptions options;
  options.max_senders = kMaxSenders;
  Envelope envelope(FuzzKeyring(), kOwnBootId, options);
  absl::StatusOr<Opened> got = envelope.Unwrap(rest, To(), kNow, &why);
  if (!got.ok()) {
    if (got.status().message().empty() || envelope.drops().total() != 1) __builtin_trap();
    return 0;
  }
  got = envelope.Unwrap(rest, To(), kNow, &why);
  if (got.ok() || why != DropReason::kReplayed || envelope.drops().replayed != 1) {
    __builtin_trap();
  }
  return 0;
}
