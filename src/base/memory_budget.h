// MemoryBudget: the bytes one node may hold for requests in flight, shared by every connection,
// API and model: request bodies while they are read and for as long as tensors view them, tensors
// decoded from JSON, decoded images, and answers while they are written. Without it, each
// request's own limit (64 MiB of body) times the connections a stranger can open is the node's
// memory: 40 bodies of 60 MB held 2.5 GB.
//
// A component reserves before it allocates; a reservation that does not fit fails at once with
// ResourceExhausted (answered 503 with Retry-After: the node is busy, not the request wrong) and
// a message naming the budget. Reservations are released when they are destroyed; Hold() ties one
// to a shared buffer, so that the bytes count until the last view of them is gone.
//
// Small requests keep flowing when large ones have spent the budget: a reservation may grow to
// the whole limit only while it stays within `small_bytes` (64 KiB: health checks, metadata, a
// sensor window, a forwarded small tensor); beyond that it must fit within `large_limit`, the
// limit minus a share kept for small ones (1/8 of it, at least small_bytes).
//
// Thread safety: every method may be called from any thread at once (one atomic counter).
// Reservations are movable values; one reservation is used by one thread at a time. The budget
// must outlive its reservations (shared_ptr holders keep it alive).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hivemesh {

class MemoryBudget : public std::enable_shared_from_this<MemoryBudget> {
 public:
  class Reservation {
   public:
    Reservation() = default;  // empty: holds nothing
    Reservation(Reservation&& other) noexcept
        : budget_(std::move(other.budget_)), bytes_(other.bytes_) {
      other.bytes_ = 0;
    }
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { Release(); }

    // Grows the reservation by `more` bytes, or fails (ResourceExhausted) leaving it as it was.
    // An empty reservation (default-constructed) grows without limit: nothing is counted.
    absl::Status Grow(uint64_t more);
    // Gives back every byte now.
    void Release();
    uint64_t bytes() const { return bytes_; }

   private:
    friend class MemoryBudget;
    Reservation(std::shared_ptr<MemoryBudget> budget, uint64_t bytes)
        : budget_(std::move(budget)), bytes_(bytes) {}
    std::shared_ptr<MemoryBudget> budget_;
    uint64_t bytes_ = 0;
  };

  static constexpr uint64_t kDefaultSmallBytes = 64 * 1024;

  // REQUIRES: limit_bytes >= 2 * small_bytes.
  static std::shared_ptr<MemoryBudget> Create(uint64_t limit_bytes,
                                              uint64_t small_bytes = kDefaultSmallBytes);

  // A reservation of `bytes` (0 is allowed and always fits), or ResourceExhausted saying how much
  // was asked for and what the budget is.
  absl::StatusOr<Reservation> Reserve(uint64_t bytes);

  // `bytes` as a shared buffer whose reservation is released when the last holder lets go.
  static std::shared_ptr<const std::string> Hold(std::string&& bytes, Reservation&& reservation);

  uint64_t limit() const { return limit_; }
  uint64_t large_limit() const { return large_limit_; }
  uint64_t small_bytes() const { return small_; }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  // Reservations refused so far.
  uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }

 private:
  MemoryBudget(uint64_t limit, uint64_t small);
  // Adds `more` to a reservation now holding `held` bytes, if it fits.
  absl::Status Take(uint64_t held, uint64_t more);
  void Give(uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  const uint64_t limit_;
  const uint64_t small_;
  const uint64_t large_limit_;
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> refusals_{0};
};

// A reservation of `bytes` for `what` (e.g. "the decoded tensors"), or why not:
//   OUT_OF_RANGE        `bytes`, with the `held` bytes the same request holds already (its body,
//                       its other reservations: it keeps them while it waits), is more than the
//                       budget ever lends (its large_limit): the request cannot be served on
//                       this node however long it waits; the message names memory_budget_mb and
//                       ends with `advice` (what the client can do)
//   RESOURCE_EXHAUSTED  it does not fit now (Reserve's error: retry later)
// A null budget reserves nothing (an empty reservation).
absl::StatusOr<MemoryBudget::Reservation> ReserveFor(MemoryBudget* budget, uint64_t bytes,
                                                     std::string_view what, std::string_view advice,
                                                     uint64_t held = 0);

}  // namespace hivemesh
