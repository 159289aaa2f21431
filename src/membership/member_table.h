// MemberTable: the members one Swim node knows (itself excluded), stored compactly.
//
// A member is a 32-byte slot indexed by its name's id in a process-wide table of node names;
// its address and its claim (bound public key, then the signature of its latest claim) are ids
// in two more process-wide tables, and non-empty metadata sits in a side table. Each string is
// thus stored once per process however many tables (simulated nodes) hold it. The shared tables
// are reference counted: the table holds one reference per member on its name, address and
// claim ids and releases them when the member is erased or the table destroyed, after which an
// id may be reused for another string.
//
// The table knows nothing of the protocol: what a state means, who may change what and when
// are Swim's (swim.h). It only stores, finds and forgets.
//
// Thread safety: none; one owner. Different tables may be used from different threads (the
// shared string tables lock internally).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "membership/wire.h"

namespace hivemesh::membership {

class MemberTable {
 public:
  static constexpr uint32_t kNoId = UINT32_MAX;

  // One member as this node knows it: 32 bytes. Its name is its id (its index in the table).
  struct Member {
    SteadyTime since;  // when `state` last changed, on this node's clock
    // The highest incarnation the member signed a claim for (accusations never raise it).
    uint64_t incarnation = 0;
    uint32_t addr = 0;   // an address id
    uint32_t claim = 0;  // a claim id: the bound key, then the signature of the latest claim
    MemberState state = MemberState::kAlive;
    uint8_t protocol_min = 1;
    uint8_t protocol_max = 1;
    bool known = false;  // false: an empty slot
  };

  MemberTable() = default;
  ~MemberTable();
  MemberTable(const MemberTable&) = delete;
  MemberTable& operator=(const MemberTable&) = delete;

  // The id `name` has in the process-wide name table, if anything holds it (no reference).
  static std::optional<uint32_t> NameId(std::string_view name);

  // Makes room for ids up to `max_id` plus `room` more members without reallocating.
  void Reserve(uint32_t max_id, size_t room);

  // The member with name id `id`, or nullptr if it is no member.
  Member* Get(uint32_t id) {
    return id < slots_.size() && slots_[id].known ? &slots_[id] : nullptr;
  }
  const Member* Get(uint32_t id) const {
    return id < slots_.size() && slots_[id].known ? &slots_[id] : nullptr;
  }
  // The member called `name` (and its id in *id), or nullptr.
  Member* Lookup(std::string_view name, uint32_t* id);
  const Member* Lookup(std::string_view name, uint32_t* id) const;

  // Adds a member (alive since `now`, incarnation 0, no claim, no metadata) and returns it; its
  // id goes to *id. REQUIRES: `name` is no member.
  Member& Insert(std::string_view name, std::string_view addr, uint32_t* id, SteadyTime now);
  // Forgets member `id` (and its metadata). REQUIRES: Get(id) != nullptr.
  void Erase(uint32_t id);

  size_t size() const { return size_; }
  // One past the largest id in use: every member's id is below it.
  uint32_t end_id() const { return static_cast<uint32_t>(slots_.size()); }

  const std::string& NameOf(uint32_t id) const;
  const std::string& AddrOf(const Member& m) const;
  void SetAddr(Member& m, std::string_view addr);
  const std::string& MetaOf(uint32_t id) const;  // empty if none
  void SetMeta(uint32_t id, std::string_view meta);
  // The member's bound key and the signature of its latest claim (empty if it has none).
  std::string_view KeyOf(const Member& m) const;
  std::string_view SigOf(const Member& m) const;
  void SetClaim(Member& m, std::string_view key, std::string_view sig);

 private:
  // Indexed by name id; a slot whose `known` is false is no member.
  std::vector<Member> slots_;
  size_t size_ = 0;
  std::unordered_map<uint32_t, std::string> metas_;  // non-empty metadata, by name id
};

}  // namespace hivemesh::membership
