// ConnectionLimits: the gossip TCP connections a node has open, in total and per source address,
// and the admission of a new one within both limits. A connection holds a Slot for as long as it
// is open; destroying the Slot frees its place.
//
// Why per source as well as in total: one host that opens connections as fast as it can must not
// take every place, so members elsewhere keep exchanging state while it tries.
//
// Thread safety: every method, and a Slot's destruction, may run on any thread (one mutex). Slots
// keep the shared state alive, so they may outlive the ConnectionLimits that made them.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "membership/envelope.h"

namespace hivemesh::membership {

class ConnectionLimits {
 public:
  class Slot {
   public:
    Slot() = default;  // holds no place
    Slot(Slot&& other) noexcept = default;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }
    void Release();

   private:
    friend class ConnectionLimits;
    struct State;
    Slot(std::shared_ptr<State> state, std::string source)
        : state_(std::move(state)), source_(std::move(source)) {}
    std::shared_ptr<State> state_;
    std::string source_;
  };

  // REQUIRES: max_total >= 1, max_per_source >= 1.
  ConnectionLimits(size_t max_total, size_t max_per_source);

  // A place for a new connection from `source` (its IP address), or ResourceExhausted naming
  // the limit that is full; *why is then kConnectionLimit or kSourceConnectionLimit.
  absl::StatusOr<Slot> Admit(std::string_view source, DropReason* why);

  size_t open() const;
  size_t open_from(std::string_view source) const;

 private:
  std::shared_ptr<Slot::State> state_;
};

}  // namespace hivemesh::membership
