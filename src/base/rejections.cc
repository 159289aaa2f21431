#include "base/rejections.h"

#include <spdlog/spdlog.h>

#include "base/strings.h"

namespace hivemesh {

std::string_view RejectionName(Rejection r) {
  switch (r) {
    case Rejection::kHeaderTooLarge:
      return "header_too_large";
    case Rejection::kBodyTooLarge:
      return "body_too_large";
    case Rejection::kChunkHeaderTooLarge:
      return "chunk_header_too_large";
    case Rejection::kBadTransferEncoding:
      return "bad_transfer_encoding";
    case Rejection::kMalformedHttp:
      return "malformed_http";
    case Rejection::kSlowClient:
      return "slow_client";
    case Rejection::kConnectionLimit:
      return "connection_limit";
    case Rejection::kSourceConnectionLimit:
      return "source_connection_limit";
    case Rejection::kAcceptFailed:
      return "accept_failed";
    case Rejection::kLinkUnauthenticated:
      return "link_unauthenticated";
    case Rejection::kIdleLinkClosed:
      return "idle_link_closed";
    case Rejection::kForwardUnauthenticated:
      return "forward_unauthenticated";
    case Rejection::kCredentialReplayed:
      return "credential_replayed";
    case Rejection::kMemoryBudget:
      return "memory_budget";
    case Rejection::kImageTooLarge:
      return "image_too_large";
    case Rejection::kResponseTooLarge:
      return "response_too_large";
    case Rejection::kBadModelName:
      return "bad_model_name";
    case Rejection::kAdminDenied:
      return "admin_denied";
    case Rejection::kPolicyDenied:
      return "policy_denied";
    case Rejection::kTlsHandshakeFailed:
      return "tls_handshake_failed";
    case Rejection::kTlsPeerRefused:
      return "tls_peer_refused";
    case Rejection::kPassThroughRefused:
      return "pass_through_refused";
    case Rejection::kTunnelRefused:
      return "tunnel_refused";
    case Rejection::kCount:
      break;
  }
  return "unknown";
}

bool RateLimitedLog::Claim(size_t key, uint64_t* events) {
  Slot& slot = slots_[key % kMaxKeys];
  slot.pending.fetch_add(1, std::memory_order_relaxed);
  const int64_t now = clock_.Now().time_since_epoch().count();
  int64_t next = slot.next_ns.load(std::memory_order_relaxed);
  if (now < next) return false;
  // One caller wins the interval; the others only counted.
  if (!slot.next_ns.compare_exchange_strong(next, now + Nanos(interval_).count(),
                                            std::memory_order_relaxed)) {
    return false;
  }
  *events = slot.pending.exchange(0, std::memory_order_relaxed);
  return true;
}

void RateLimitedLog::Write(std::string_view line, uint64_t events) const {
  if (events <= 1) {
    spdlog::warn("{}", line);
  } else {
    spdlog::warn("{} (and {} more like it in the last {} ms)", line, events - 1, interval_.count());
  }
}

void Rejections::Note(Rejection r, std::string_view source, std::string_view detail) {
  counts_[static_cast<size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  log_.Warn(static_cast<size_t>(r), [&] {
    std::string line = StrCat("rejected (", RejectionName(r), ")");
    if (!source.empty()) StrAppend(&line, " from ", source);
    if (!detail.empty()) StrAppend(&line, ": ", detail);
    return line;
  });
}

}  // namespace hivemesh
