// StringTable: process-wide interning of node names and addresses, so that each of the
// (node, member) entries a simulated mesh of thousands of nodes holds costs a 4-byte id rather
// than a string.
//
// Thread safety: every method may be called from any thread (one absl::Mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hivemesh::membership {

// A process-wide, thread-safe table of strings (node names, or addresses) with reference counts:
// each distinct string is stored once and named by a small id; an id is freed and reused once
// its count drops to zero. Strings live in their own heap blocks, so a reference returned by
// Get() stays valid while the caller holds a count on the id.
class StringTable {
 public:
  // The id of `s` (added if new), with one more reference.
  uint32_t Acquire(std::string_view s) {
    absl::MutexLock lock(&mu_);
    auto it = ids_.find(s);
    if (it != ids_.end()) {
      ++entries_[it->second].refs;
      return it->second;
    }
    uint32_t id = 0;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<uint32_t>(entries_.size());
      entries_.emplace_back();
    }
    Entry& e = entries_[id];
    e.value = std::make_unique<std::string>(s);
    e.refs = 1;
    ids_.emplace(std::string_view(*e.value), id);
    return id;
  }
  void Release(uint32_t id) {
    absl::MutexLock lock(&mu_);
    ReleaseLocked(id);
  }
  void Release(const std::vector<uint32_t>& ids) {
    absl::MutexLock lock(&mu_);
    for (uint32_t id : ids) ReleaseLocked(id);
  }
  // The id of `s` if some holder has it; no reference is taken.
  std::optional<uint32_t> Find(std::string_view s) const {
    absl::MutexLock lock(&mu_);
    auto it = ids_.find(s);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  // REQUIRES: the caller holds a reference on `id`.
  const std::string& Get(uint32_t id) const {
    absl::MutexLock lock(&mu_);
    return *entries_[id].value;
  }

 private:
  struct Entry {
    std::unique_ptr<std::string> value;
    uint32_t refs = 0;
  };
  void ReleaseLocked(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry& e = entries_[id];
    if (--e.refs > 0) return;
    ids_.erase(std::string_view(*e.value));
    e.value.reset();
    free_.push_back(id);
  }

  mutable absl::Mutex mu_;
  // Views into entries_[id].value.
  std::unordered_map<std::string_view, uint32_t> ids_ ABSL_GUARDED_BY(mu_);
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hivemesh::membership
