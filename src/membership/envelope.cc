#include "membership/envelope.h"

#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "base/strings.h"

namespace hivemesh::membership {
namespace {

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetU64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

// |a - b| without overflow (the result always fits in 64 unsigned bits).
uint64_t Distance(int64_t a, int64_t b) {
  const auto ua = static_cast<uint64_t>(a);
  const auto ub = static_cast<uint64_t>(b);
  return a >= b ? ua - ub : ub - ua;
}

// The prefix that binds a chunk to its frame: sender boot id, head counter, index.
std::string ChunkPrefix(uint64_t sender, uint64_t head_counter, uint32_t index) {
  std::string out;
  out.reserve(20);
  PutU64(out, sender);
  PutU64(out, head_counter);
  PutU32(out, index);
  return out;
}

}  // namespace

std::string_view DropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::kMalformed:
      return "malformed";
    case DropReason::kUnauthenticated:
      return "unauthenticated";
    case DropReason::kReplayed:
      return "replayed";
    case DropReason::kStale:
      return "stale";
    case DropReason::kOversized:
      return "oversized";
    case DropReason::kMisdirected:
      return "misdirected";
    case DropReason::kBadFrame:
      return "bad_frame";
    case DropReason::kFrameTooLarge:
      return "frame_too_large";
    case DropReason::kConnectionLimit:
      return "connection_limit";
    case DropReason::kSourceConnectionLimit:
      return "source_connection_limit";
    case DropReason::kBudget:
      return "budget";
    case DropReason::kTimeout:
      return "timeout";
    case DropReason::kAcceptFailed:
      return "accept_failed";
  }
  return "unknown";
}

namespace {
// The counter of `reason` in `c` (one place that maps reasons to fields).
template <typename Counters>
auto& Field(Counters& c, DropReason reason) {
  switch (reason) {
    case DropReason::kMalformed:
      return c.malformed;
    case DropReason::kUnauthenticated:
      return c.unauthenticated;
    case DropReason::kReplayed:
      return c.replayed;
    case DropReason::kStale:
      return c.stale;
    case DropReason::kOversized:
      return c.oversized;
    case DropReason::kMisdirected:
      return c.misdirected;
    case DropReason::kBadFrame:
      return c.bad_frame;
    case DropReason::kFrameTooLarge:
      return c.frame_too_large;
    case DropReason::kConnectionLimit:
      return c.connection_limit;
    case DropReason::kSourceConnectionLimit:
      return c.source_connection_limit;
    case DropReason::kBudget:
      return c.budget;
    case DropReason::kTimeout:
      return c.timeout;
    case DropReason::kAcceptFailed:
      return c.accept_failed;
  }
  return c.malformed;  // unreachable: every enumerator is listed above
}
}  // namespace

void DropCounters::Add(DropReason reason) { ++Field(*this, reason); }

uint64_t DropCounters::of(DropReason reason) const { return Field(*this, reason); }

uint64_t DropCounters::total() const {
  uint64_t sum = 0;
  for (size_t r = 0; r < kDropReasonCount; ++r) sum += of(static_cast<DropReason>(r));
  return sum;
}

DropCounters& DropCounters::operator+=(const DropCounters& other) {
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    Field(*this, static_cast<DropReason>(r)) += other.of(static_cast<DropReason>(r));
  }
  return *this;
}

Recipient Recipient::Address(std::string_view host_port) {
  return Recipient(Kind::kAddress, std::string(host_port.substr(0, kMaxAddressBytes)));
}

Recipient Recipient::Reply(uint64_t requester_boot_id, uint64_t request_counter) {
  std::string bytes;
  PutU64(bytes, requester_boot_id);
  PutU64(bytes, request_counter);
  return Recipient(Kind::kReply, std::move(bytes));
}

std::string Recipient::Describe() const {
  if (kind_ == Kind::kAddress) return bytes_;
  if (bytes_.size() != 16) return StrCat("a recipient of kind ", static_cast<int>(kind_));
  return StrCat("the reply to exchange ", GetU64(bytes_), "/",
                GetU64(std::string_view(bytes_).substr(8)));
}

absl::Status EnvelopeOptions::Validate() const {
  if (max_clock_skew.count() < 0) {
    return absl::InvalidArgumentError(
        StrCat("max_clock_skew must not be negative (got ", max_clock_skew.count(), " ms)"));
  }
  if (max_packet_bytes < 1) return absl::InvalidArgumentError("max_packet_bytes must be >= 1");
  if (max_senders < 1) return absl::InvalidArgumentError("max_senders must be >= 1");
  return absl::OkStatus();
}

Envelope::Envelope(std::optional<Keyring> keyring, uint64_t boot_id, EnvelopeOptions options)
    : keyring_(std::move(keyring)), boot_id_(boot_id), options_(options) {}

std::string Envelope::Wrap(std::string_view payload, const Recipient& to, int64_t unix_ms,
                           uint64_t* counter) {
  if (counter != nullptr) *counter = 0;
  if (!keyring_) return std::string(payload);
  const uint64_t n = next_counter_++;
  if (counter != nullptr) *counter = n;
  std::string inner;
  inner.reserve(kHeaderBytes + to.bytes().size() + payload.size());
  inner.push_back(static_cast<char>(kFormat));
  PutU64(inner, boot_id_);
  PutU64(inner, n);
  PutU64(inner, static_cast<uint64_t>(unix_ms));
  inner.push_back(static_cast<char>(to.kind()));
  inner.push_back(static_cast<char>(to.bytes().size()));  // <= kMaxAddressBytes (255)
  inner.append(to.bytes());
  inner.append(payload);
  return keyring_->Seal(inner);
}

absl::StatusOr<Opened> Envelope::Unwrap(std::string_view packet, const Recipient& expected,
                                        int64_t unix_ms, DropReason* why) {
  return Unwrap(packet, expected, unix_ms, why, options_.max_packet_bytes);
}

absl::StatusOr<Opened> Envelope::Unwrap(std::string_view packet, const Recipient& expected,
                                        int64_t unix_ms, DropReason* why, size_t max_packet_bytes) {
  if (packet.size() > max_packet_bytes) {
    return Drop(DropReason::kOversized,
                absl::InvalidArgumentError(StrCat(
                    "packet of ", packet.size(), " bytes exceeds the limit of ", max_packet_bytes)),
                why);
  }
  if (!keyring_) return Opened{std::string(packet), 0, 0};

  absl::StatusOr<std::string> inner = keyring_->Open(packet);
  if (!inner.ok()) {
    return Drop(DropReason::kUnauthenticated,
                absl::UnauthenticatedError(
                    StrCat("dropped unauthenticated packet: ", MessageOf(inner.status()))),
                why);
  }
  const std::string_view in(*inner);
  if (in.size() < kHeaderBytes || static_cast<uint8_t>(in[0]) != kFormat) {
    return Drop(DropReason::kMalformed,
                absl::InvalidArgumentError(
                    in.empty() ? std::string("authenticated packet is empty")
                               : StrCat("authenticated packet of ", in.size(),
                                        " bytes is not an envelope of format ", int{kFormat},
                                        " (format byte ", static_cast<uint8_t>(in[0]),
                                        "): a node of another version?")),
                why);
  }
  const uint64_t sender = GetU64(in.substr(1, 8));
  const uint64_t counter = GetU64(in.substr(9, 8));
  const auto sent_ms = static_cast<int64_t>(GetU64(in.substr(17, 8)));
  const auto kind = static_cast<uint8_t>(in[25]);
  const size_t to_len = static_cast<uint8_t>(in[26]);
  if (in.size() < kHeaderBytes + to_len) {
    return Drop(DropReason::kMalformed,
                absl::InvalidArgumentError(StrCat("authenticated packet of ", in.size(),
                                                  " bytes is shorter than its recipient")),
                why);
  }
  const std::string_view to = in.substr(kHeaderBytes, to_len);

  const auto skew = static_cast<uint64_t>(options_.max_clock_skew.count());
  if (Distance(unix_ms, sent_ms) > skew) {
    return Drop(DropReason::kStale,
                absl::FailedPreconditionError(
                    StrCat("dropped stale packet: sent at ", sent_ms, " ms, received at ", unix_ms,
                           " ms, more than the allowed clock skew of ", skew, " ms")),
                why);
  }
  if (sender == boot_id_) {
    return Drop(DropReason::kReplayed,
                absl::AlreadyExistsError("dropped a packet carrying this node's own boot id "
                                         "(our own traffic reflected back)"),
                why);
  }
  if (kind != static_cast<uint8_t>(expected.kind()) || to != expected.bytes()) {
    std::string addressed;
    if (kind == static_cast<uint8_t>(Recipient::Kind::kAddress)) {
      addressed = Recipient::Address(to).Describe();
    } else if (kind == static_cast<uint8_t>(Recipient::Kind::kReply) && to.size() == 16) {
      addressed = Recipient::Reply(GetU64(to), GetU64(to.substr(8))).Describe();
    } else {
      addressed = StrCat("a recipient of kind ", int{kind});
    }
    return Drop(
        DropReason::kMisdirected,
        absl::FailedPreconditionError(StrCat("dropped misdirected packet: addressed to ", addressed,
                                             ", arrived at ", expected.Describe())),
        why);
  }
  if (!AcceptCounter(sender, counter)) {
    return Drop(DropReason::kReplayed,
                absl::AlreadyExistsError(StrCat(
                    "dropped replayed packet: counter ", counter, " of sender boot id ", sender,
                    " was already seen or is older than the ", kReplayWindow, "-packet window")),
                why);
  }
  Opened out;
  out.sender = sender;
  out.counter = counter;
  inner->erase(0, kHeaderBytes + to_len);
  out.payload = *std::move(inner);
  return out;
}

std::string Envelope::SealChunk(uint64_t head_counter, uint32_t index,
                                std::string_view data) const {
  std::string inner = ChunkPrefix(boot_id_, head_counter, index);
  inner.append(data);
  return keyring_->Seal(inner);
}

absl::StatusOr<std::string> Envelope::OpenChunk(std::string_view sealed, uint64_t sender,
                                                uint64_t head_counter, uint32_t index,
                                                DropReason* why) {
  absl::StatusOr<std::string> inner = keyring_->Open(sealed);
  if (!inner.ok()) {
    return Drop(DropReason::kUnauthenticated,
                absl::UnauthenticatedError(StrCat("dropped unauthenticated chunk ", index,
                                                  " of a frame: ", MessageOf(inner.status()))),
                why);
  }
  const std::string prefix = ChunkPrefix(sender, head_counter, index);
  if (inner->size() < prefix.size() ||
      std::string_view(*inner).substr(0, prefix.size()) != prefix) {
    return Drop(DropReason::kReplayed,
                // Not StrCat: GCC 12 at -O3 misreads the copy it inlines here as overlapping
                // (-Wrestrict).
                absl::AlreadyExistsError("dropped chunk " + std::to_string(index) +
                                         " of a frame: it was sealed for another frame or "
                                         "position"),
                why);
  }
  inner->erase(0, prefix.size());
  return inner;
}

absl::Status Envelope::Drop(DropReason reason, absl::Status status, DropReason* why) {
  drops_.Add(reason);
  if (why != nullptr) *why = reason;
  return status;
}

bool Envelope::AcceptCounter(uint64_t boot_id, uint64_t counter) {
  ++use_tick_;
  auto it = windows_.find(boot_id);
  if (it == windows_.end()) {
    if (windows_.size() >= options_.max_senders) {
      // Evict the sender heard from least recently. Linear, but only when a new boot id (a
      // node start) arrives at a full table, which is rare.
      auto oldest = windows_.begin();
      for (auto w = windows_.begin(); w != windows_.end(); ++w) {
        if (w->second.last_use < oldest->second.last_use) oldest = w;
      }
      windows_.erase(oldest);
    }
    windows_.emplace(boot_id, Window{.top = counter, .bitmap = 1, .last_use = use_tick_});
    return true;
  }
  Window& w = it->second;
  if (counter > w.top) {
    const uint64_t shift = counter - w.top;
    w.bitmap = shift >= kReplayWindow ? 1 : (w.bitmap << shift) | 1;
    w.top = counter;
  } else {
    const uint64_t age = w.top - counter;
    if (age >= kReplayWindow) return false;  // older than the window: cannot tell, so drop
    const uint64_t bit = uint64_t{1} << age;
    if (w.bitmap & bit) return false;
    w.bitmap |= bit;
  }
  w.last_use = use_tick_;
  return true;
}

uint64_t RandomBootId() {
  uint64_t id = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) {
    std::fprintf(stderr, "hivemesh envelope: RAND_bytes failed\n");
    std::abort();
  }
  return id;
}

}  // namespace hivemesh::membership
