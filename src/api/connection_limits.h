// ConnectionLimits: how many connections a server holds open, in total and per source address,
// and the admission rule for a new one. Each open connection (plain HTTP or a mesh link) holds a
// Slot from accept to close; a connection over either limit gets none and is closed at once.
//
// A source is an IPv4 address, or an IPv6 /64 prefix (one host can hold a whole /64, so a
// per-address limit on IPv6 would limit nothing); SourceKey() makes the key from an address's
// bytes.
//
// Thread safety: every method may be called from any thread (one mutex, taken at accept and at
// close only, never per request). Slots are movable values, released on destruction; the limits
// must outlive their slots.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "base/rejections.h"

namespace hivemesh {

class ConnectionLimits {
 public:
  // Held by one open connection; gives its place back when destroyed.
  class Slot {
   public:
    Slot() = default;  // holds nothing
    Slot(Slot&& other) noexcept : limits_(other.limits_), key_(std::move(other.key_)) {
      other.limits_ = nullptr;
    }
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }
    void Release();

   private:
    friend class ConnectionLimits;
    Slot(ConnectionLimits* limits, std::string key) : limits_(limits), key_(std::move(key)) {}
    ConnectionLimits* limits_ = nullptr;
    std::string key_;
  };

  // REQUIRES: max_total >= 1, max_per_source >= 1.
  ConnectionLimits(int max_total, int max_per_source)
      : max_total_(max_total), max_per_source_(max_per_source) {}

  // A slot for a new connection from `source_key`, or none, with `*refused` saying which limit
  // is full (kConnectionLimit or kSourceConnectionLimit).
  std::optional<Slot> Admit(std::string_view source_key, Rejection* refused);

  int max_total() const { return max_total_; }
  int max_per_source() const { return max_per_source_; }
  int open() const;
  int open_from(std::string_view source_key) const;

 private:
  void Release(const std::string& key);

  const int max_total_;
  const int max_per_source_;
  mutable std::mutex mu_;
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, int> per_source_ ABSL_GUARDED_BY(mu_);  // no zero entries
};

// The key of a source address given as its bytes in network order (4 for IPv4, 16 for IPv6):
// the IPv4 address (also for an IPv4-mapped IPv6 one), else the IPv6 /64 prefix.
std::string SourceKey(std::string_view address_bytes);

// The defaults for a process that may open `nofile` descriptors (RLIMIT_NOFILE): connections
// in total, half of them, at most 1024, so that connections alone leave the other half to model
// files, gossip, peer connections and gRPC, and their buffers (up to about 200 KiB each for a
// head or trailers under way) stay within some 200 MiB; per source, half of that, at most 256.
struct ConnectionLimitDefaults {
  int max_total;
  int max_per_source;
};
ConnectionLimitDefaults DefaultConnectionLimits(uint64_t nofile);
// The same for this process's RLIMIT_NOFILE (soft limit).
ConnectionLimitDefaults DefaultConnectionLimits();

}  // namespace hivemesh
