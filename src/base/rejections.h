// Rejections: what a node refused, dropped or cut off because the input looked hostile or went
// over a limit, counted by reason for /metrics (hivemesh_rejected_total{reason}) and logged at
// warn level at most once per interval per reason, so that an attack shows in metrics and logs
// without the log itself becoming the attack (a flood of one kind of bad input writes one line a
// second, which says how many more it stands for).
//
// The reasons are one list for the whole node (docs/security.md explains each); gossip packets
// have their own list (membership/envelope.h, DropReason) because they are counted per packet,
// not per request or connection.
//
// RateLimitedLog is the logging half on its own, for components that keep their own counters.
//
// Thread safety: every method may be called from any thread at once (atomics only; the log line
// is written by whichever caller wins the interval).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/clock.h"

namespace hivemesh {

// Only append before kCount: the names are metric label values that dashboards use.
enum class Rejection : uint8_t {
  kHeaderTooLarge,          // request head over the header limit (431)
  kBodyTooLarge,            // request body over max_body_bytes (413)
  kChunkHeaderTooLarge,     // a chunk-size line (extensions) or the trailers over their limit
  kBadTransferEncoding,     // Transfer-Encoding other than exactly "chunked" (400)
  kMalformedHttp,           // a request the HTTP parser refused (400)
  kSlowClient,              // a request head or body not received within its timeout
  kConnectionLimit,         // the node's limit on open connections was reached
  kSourceConnectionLimit,   // one source address's limit on open connections was reached
  kAcceptFailed,            // accept() failed (e.g. out of file descriptors); the loop backs off
  kLinkUnauthenticated,     // a mesh link upgrade without a valid member credential
  kIdleLinkClosed,          // a mesh link closed after idle_link_timeout without requests
  kForwardUnauthenticated,  // a forwarded request without a valid member credential (403)
  kCredentialReplayed,      // a member credential presented a second time
  kMemoryBudget,            // the node's memory budget for requests in flight was spent (503)
  kImageTooLarge,           // an image input declaring more pixels than allowed (400)
  kResponseTooLarge,        // an answer that would exceed the response size limit
  kBadModelName,            // a repository API call with an invalid model name (400)
  kAdminDenied,             // a repository (admin) call without the needed credentials (403)
  kTlsHandshakeFailed,      // a TLS handshake that failed or did not finish in header_timeout
  kTlsPeerRefused,          // a TLS peer whose certificate the node's check refused (403)
  kPolicyDenied,            // a call the mesh's authorization policy does not allow (403)
  kPassThroughRefused,      // a connection at a Service's port with nowhere to be relayed to
  kTunnelRefused,           // a tunnel upgrade refused (not a member, no such workload here)
  kCount
};
// "header_too_large", "body_too_large", ... (metric label values; the enum's names in snake case).
std::string_view RejectionName(Rejection r);

// Writes a warn line at most once per `interval` per key (a small integer chosen by the caller,
// below kMaxKeys), saying how many calls the line stands for.
class RateLimitedLog {
 public:
  static constexpr size_t kMaxKeys = 64;
  explicit RateLimitedLog(const Clock& clock = SystemClock::Get(),
                          std::chrono::milliseconds interval = std::chrono::seconds(1))
      : clock_(clock), interval_(interval) {}

  // Counts one event for `key`; if the key's interval has passed, logs make_line() at warn
  // level with the number of events since the last line, and returns true. The line is built
  // only when it is written, so a flood costs a counter increment per event.
  // REQUIRES: key < kMaxKeys.
  template <typename MakeLine>
  bool Warn(size_t key, MakeLine&& make_line) {
    uint64_t events = 0;
    if (!Claim(key, &events)) return false;
    Write(make_line(), events);
    return true;
  }

 private:
  // Counts an event; true if this caller writes the line (*events: the events it stands for).
  bool Claim(size_t key, uint64_t* events);
  void Write(std::string_view line, uint64_t events) const;

  struct Slot {
    std::atomic<int64_t> next_ns{INT64_MIN};  // steady-clock ns before which no line is written
    std::atomic<uint64_t> pending{0};         // events since the last line
  };
  const Clock& clock_;
  const std::chrono::milliseconds interval_;
  std::array<Slot, kMaxKeys> slots_;
};

class Rejections {
 public:
  explicit Rejections(const Clock& clock = SystemClock::Get(),
                      std::chrono::milliseconds log_interval = std::chrono::seconds(1))
      : log_(clock, log_interval) {}

  // Counts one rejection; logs (rate-limited) "<reason> from <source>: <detail>". `source` is
  // the peer's address (or empty when there is none, e.g. a full budget).
  void Note(Rejection r, std::string_view source, std::string_view detail);
  uint64_t count(Rejection r) const {
    return counts_[static_cast<size_t>(r)].load(std::memory_order_relaxed);
  }

 private:
  RateLimitedLog log_;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Rejection::kCount)> counts_{};
};

}  // namespace hivemesh
