// libFuzzer target for Envelope::Unwrap, the first code every gossip packet meets. The first
// byte picks the mode:
//  0: plaintext envelope: the rest (after one byte choosing a per-call size limit) must pass
//     through unchanged, or be dropped as oversized.
//  1: keyed envelope, the rest is one packet off the wire. Every error names a reason and is
//     counted; a packet accepted once (only the valid seeds get that far) is a replay the second
//     time.
//  2: keyed envelope, the rest is a sequence of records; each becomes an envelope header and
//     payload that this harness seals with the shared key (the fuzzer cannot forge tags, so
//     this is how authentic packets with arbitrary boot ids, counters and timestamps reach the
//     replay window). Every verdict is checked against a reference model: unbounded per-sender
//     history, the 64-packet window rule and least-recently-used eviction of senders.
// Record (mode 2): [kind u8], then for even kinds [boot u8] [counter u8] [skew s i8]
// [payload length u8] [payload] (counter bytes >= 0x80 count down from 2^64 - 1; the timestamp
// is now + s seconds), for odd kinds [length u8] [raw header and payload bytes].
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "membership/envelope.h"

namespace {

using hivemesh::membership::DropReason;
using hivemesh::membership::Envelope;
using hivemesh::membership::EnvelopeOptions;
using hivemesh::membership::Keyring;

// The seed corpus (tests/fuzz/corpus/envelope) was sealed with this key and label at this time.
constexpr int64_t kNow = 1'700'000'000'000;
constexpr uint64_t kOwnBootId = 0;
constexpr size_t kMaxSenders = 4;

const Keyring& FuzzKeyring() {
  static const Keyring* ring = [] {
    absl::StatusOr<Keyring> r = Keyring::Create({std::string(32, '\x42')}, "fuzz");
    if (!r.ok()) __builtin_trap();
    return new Keyring(*r);
  }();
  return *ring;
}

uint64_t TotalDrops(const Envelope& e) {
  const auto& d = e.drops();
  return d.malformed + d.unauthenticated + d.replayed + d.stale + d.oversized;
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

// The replay rules, written the obvious way.
class Model {
 public:
  std::optional<DropReason> Expect(std::string_view inner) {
    if (inner.size() < Envelope::kHeaderBytes) return DropReason::kMalformed;
    const uint64_t boot = GetU64(inner.substr(0, 8));
    const uint64_t counter = GetU64(inner.substr(8, 8));
    const auto ts = static_cast<int64_t>(GetU64(inner.substr(16, 8)));
    const __int128 diff = static_cast<__int128>(kNow) - ts;
    if (diff > 60000 || diff < -60000) return DropReason::kStale;
    if (boot == kOwnBootId) return DropReason::kReplayed;
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

void CheckVerdict(const absl::StatusOr<std::string>& got, DropReason why,
                  std::optional<DropReason> expected, std::string_view inner) {
  if (expected.has_value()) {
    if (got.ok() || why != *expected || got.status().message().empty()) __builtin_trap();
  } else {
    if (!got.ok() || *got != inner.substr(Envelope::kHeaderBytes)) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 3;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  DropReason why = DropReason::kMalformed;

  if (mode == 0) {
    if (rest.empty()) return 0;
    const size_t limit = 1 + static_cast<size_t>(static_cast<uint8_t>(rest[0])) * 16;
    rest.remove_prefix(1);
    Envelope plain(std::nullopt, kOwnBootId);
    absl::StatusOr<std::string> got = plain.Unwrap(rest, kNow, &why, limit);
    if (rest.size() > limit) {
      if (got.ok() || why != DropReason::kOversized || plain.drops().oversized != 1) {
        __builtin_trap();
      }
    } else if (!got.ok() || *got != rest) {
      __builtin_trap();
    }
    return 0;
  }

  EnvelopeOptions options;
  options.max_senders = kMaxSenders;
  Envelope envelope(FuzzKeyring(), kOwnBootId, options);

  if (mode == 1) {
    absl::StatusOr<std::string> got = envelope.Unwrap(rest, kNow, &why);
    if (!got.ok()) {
      if (got.status().message().empty() || TotalDrops(envelope) != 1) __builtin_trap();
      return 0;
    }
    got = envelope.Unwrap(rest, kNow, &why);
    if (got.ok() || why != DropReason::kReplayed || envelope.drops().replayed != 1) {
      __builtin_trap();
    }
    return 0;
  }

  Model model;
  uint64_t drops = 0;
  while (!rest.empty()) {
    const auto kind = static_cast<uint8_t>(rest[0]);
    rest.remove_prefix(1);
    std::string inner;
    if (kind % 2 == 0) {
      if (rest.size() < 4) break;
      const auto boot = static_cast<uint8_t>(rest[0]);
      const auto c = static_cast<uint8_t>(rest[1]);
      const auto skew_s = static_cast<int8_t>(rest[2]);
      const size_t payload_len = static_cast<uint8_t>(rest[3]);
      rest.remove_prefix(4);
      if (rest.size() < payload_len) break;
      const uint64_t counter = c >= 0x80 ? UINT64_MAX - (c - 0x80) : c;
      PutU64(inner, boot);
      PutU64(inner, counter);
      PutU64(inner, static_cast<uint64_t>(kNow + int64_t{skew_s} * 1000));
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
    absl::StatusOr<std::string> got = envelope.Unwrap(FuzzKeyring().Seal(inner), kNow, &why);
    CheckVerdict(got, why, expected, inner);
    if (expected.has_value()) ++drops;
    if (TotalDrops(envelope) != drops || envelope.remembered_senders() > kMaxSenders) {
      __builtin_trap();
    }
  }
  return 0;
}
