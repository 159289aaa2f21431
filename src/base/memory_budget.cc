#include "base/memory_budget.h"

#include <algorithm>

#include "base/strings.h"

namespace hivemesh {
namespace {

std::string Mib(uint64_t bytes) {
  return bytes % (1024 * 1024) == 0 ? StrCat(bytes / (1024 * 1024), " MiB")
                                    : StrCat(bytes, " bytes");
}

}  // namespace

MemoryBudget::MemoryBudget(uint64_t limit, uint64_t small)
    : limit_(limit), small_(small), large_limit_(limit - std::max(small, limit / 8)) {}

std::shared_ptr<MemoryBudget> MemoryBudget::Create(uint64_t limit_bytes, uint64_t small_bytes) {
  return std::shared_ptr<MemoryBudget>(new MemoryBudget(limit_bytes, small_bytes));
}

absl::Status MemoryBudget::Take(uint64_t held, uint64_t more) {
  // A reservation that stays small may use the whole budget; a large one only up to large_limit.
  const bool small = held <= small_ && more <= small_ - held;
  const uint64_t cap = small ? limit_ : large_limit_;
  uint64_t used = used_.load(std::memory_order_relaxed);
  for (;;) {
    if (more > cap || used > cap - more) {
      refusals_.fetch_add(1, std::memory_order_relaxed);
      return absl::ResourceExhaustedError(
          StrCat("the node's memory budget for requests in flight (", Mib(limit_),
                 ") is spent: ", used, " bytes are held and this request needs ", held + more,
                 "; retry later, or send smaller requests"));
    }
    if (used_.compare_exchange_weak(used, used + more, std::memory_order_relaxed)) {
      return absl::OkStatus();
    }
  }
}

absl::StatusOr<MemoryBudget::Reservation> MemoryBudget::Reserve(uint64_t bytes) {
  absl::Status taken = Take(0, bytes);
  if (!taken.ok()) return taken;
  return Reservation(shared_from_this(), bytes);
}

std::shared_ptr<const std::string> MemoryBudget::Hold(std::string&& bytes,
                                                      Reservation&& reservation) {
  struct Held {
    std::string bytes;
    Reservation reservation;
  };
  auto held = std::make_shared<Held>(Held{std::move(bytes), std::move(reservation)});
  // An aliasing pointer: the string's holders keep the reservation alive with it.
  return std::shared_ptr<const std::string>(held, &held->bytes);
}

MemoryBudget::Reservation& MemoryBudget::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::move(other.budget_);
    bytes_ = other.bytes_;
    other.bytes_ = 0;
  }
  return *this;
}

absl::Status MemoryBudget::Reservation::Grow(uint64_t more) {
  if (budget_ == nullptr) return absl::OkStatus();
  absl::Status taken = budget_->Take(bytes_, more);
  if (taken.ok()) bytes_ += more;
  return taken;
}

absl::StatusOr<MemoryBudget::Reservation> ReserveFor(MemoryBudget* budget, uint64_t bytes,
                                                     std::string_view what, std::string_view advice,
                                                     uint64_t held) {
  if (budget == nullptr) return MemoryBudget::Reservation();
  const uint64_t cap = budget->large_limit();
  if (bytes > cap || held > cap - bytes) {
    return absl::OutOfRangeError(StrCat(
        what, " would take ", bytes, " bytes of memory",
        held > 0 ? StrCat(" besides the ", held, " its request holds") : std::string(),
        ", more than this node lets one request hold (", cap, " bytes of its memory budget of ",
        Mib(budget->limit()), ", memory_budget_mb); ", advice));
  }
  return budget->Reserve(bytes);
}

void MemoryBudget::Reservation::Release() {
  if (budget_ != nullptr && bytes_ > 0) budget_->Give(bytes_);
  bytes_ = 0;
}

}  // namespace hivemesh
