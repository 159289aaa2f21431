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
  }
  return "unknown";
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

std::string Envelope::Wrap(std::string_view payload, int64_t unix_ms) {
  if (!keyring_) return std::string(payload);
  std::string inner;
  inner.reserve(kHeaderBytes + payload.size());
  PutU64(inner, boot_id_);
  PutU64(inner, next_counter_++);
  PutU64(inner, static_cast<uint64_t>(unix_ms));
  inner.append(payload);
  return keyring_->Seal(inner);
}

absl::StatusOr<std::string> Envelope::Unwrap(std::string_view packet, int64_t unix_ms,
                                             DropReason* why) {
  return Unwrap(packet, unix_ms, why, options_.max_packet_bytes);
}

absl::StatusOr<std::string> Envelope::Unwrap(std::string_view packet, int64_t unix_ms,
                                             DropReason* why, size_t max_packet_bytes) {
  if (packet.size() > max_packet_bytes) {
    return Drop(DropReason::kOversized,
                absl::InvalidArgumentError(StrCat(
                    "packet of ", packet.size(), " bytes exceeds the limit of ", max_packet_bytes)),
                why);
  }
  if (!keyring_) return std::string(packet);

  absl::StatusOr<std::string> inner = keyring_->Open(packet);
  if (!inner.ok()) {
    return Drop(DropReason::kUnauthenticated,
                absl::UnauthenticatedError(
                    StrCat("dropped unauthenticated packet: ", MessageOf(inner.status()))),
                why);
  }
  if (inner->size() < kHeaderBytes) {
    return Drop(DropReason::kMalformed,
                absl::InvalidArgumentError(StrCat("authenticated packet of ", inner->size(),
                                                  " bytes is shorter than the ", kHeaderBytes,
                                                  "-byte envelope header")),
                why);
  }
  const std::string_view header(inner->data(), kHeaderBytes);
  const uint64_t sender = GetU64(header.substr(0, 8));
  const uint64_t counter = GetU64(header.substr(8, 8));
  const auto sent_ms = static_cast<int64_t>(GetU64(header.substr(16, 8)));

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
  if (!AcceptCounter(sender, counter)) {
    return Drop(DropReason::kReplayed,
                absl::AlreadyExistsError(StrCat(
                    "dropped replayed packet: counter ", counter, " of sender boot id ", sender,
                    " was already seen or is older than the ", kReplayWindow, "-packet window")),
                why);
  }
  inner->erase(0, kHeaderBytes);
  return inner;
}

absl::Status Envelope::Drop(DropReason reason, absl::Status status, DropReason* why) {
  switch (reason) {
    case DropReason::kMalformed:
      ++drops_.malformed;
      break;
    case DropReason::kUnauthenticated:
      ++drops_.unauthenticated;
      break;
    case DropReason::kReplayed:
      ++drops_.replayed;
      break;
    case DropReason::kStale:
      ++drops_.stale;
      break;
    case DropReason::kOversized:
      ++drops_.oversized;
      break;
  }
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
