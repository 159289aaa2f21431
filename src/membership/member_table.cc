#include "membership/member_table.h"

#include <algorithm>

#include "identity/node_key.h"
#include "membership/string_table.h"

namespace hivemesh::membership {
namespace {

// Never destroyed, so tables destroyed at exit can still release their ids.
StringTable& Names() {
  static StringTable* t = new StringTable();
  return *t;
}
StringTable& Addrs() {
  static StringTable* t = new StringTable();
  return *t;
}
// Members' claims: public key and signature (96 bytes), shared by every table that holds the same.
StringTable& Claims() {
  static StringTable* t = new StringTable();
  return *t;
}

constexpr size_t kKeySize = identity::kPublicKeyBytes;

const std::string kEmpty;

}  // namespace

MemberTable::~MemberTable() {
  std::vector<uint32_t> names, addrs, claims;
  names.reserve(size_);
  addrs.reserve(size_);
  claims.reserve(size_);
  for (uint32_t id = 0; id < slots_.size(); ++id) {
    if (!slots_[id].known) continue;
    names.push_back(id);
    addrs.push_back(slots_[id].addr);
    claims.push_back(slots_[id].claim);
  }
  Names().Release(names);
  Addrs().Release(addrs);
  Claims().Release(claims);
}

std::optional<uint32_t> MemberTable::NameId(std::string_view name) { return Names().Find(name); }

void MemberTable::Reserve(uint32_t max_id, size_t room) {
  slots_.reserve(std::max<size_t>(slots_.size(), max_id + 1) + room);
}

MemberTable::Member* MemberTable::Lookup(std::string_view name, uint32_t* id) {
  const std::optional<uint32_t> found = Names().Find(name);
  if (!found.has_value()) return nullptr;
  *id = *found;
  return Get(*found);
}

const MemberTable::Member* MemberTable::Lookup(std::string_view name, uint32_t* id) const {
  const std::optional<uint32_t> found = Names().Find(name);
  if (!found.has_value()) return nullptr;
  *id = *found;
  return Get(*found);
}

MemberTable::Member& MemberTable::Insert(std::string_view name, std::string_view addr, uint32_t* id,
                                         SteadyTime now) {
  const uint32_t i = Names().Acquire(name);
  if (i >= slots_.size()) {
    // Grow by an eighth (not double): at 10,000 members per node the slack is what costs.
    if (i >= slots_.capacity()) {
      slots_.reserve(std::max<size_t>(i + 1, slots_.capacity() + slots_.capacity() / 8 + 16));
    }
    slots_.resize(i + 1);
  }
  Member& m = slots_[i];
  m = Member{};
  m.known = true;
  m.addr = Addrs().Acquire(addr);
  m.claim = Claims().Acquire("");
  m.state = MemberState::kAlive;
  m.since = now;
  ++size_;
  *id = i;
  return m;
}

void MemberTable::Erase(uint32_t id) {
  Member& m = slots_[id];
  Addrs().Release(m.addr);
  Claims().Release(m.claim);
  m = Member{};
  metas_.erase(id);
  --size_;
  Names().Release(id);
  // Trailing empty slots are returned, so a table shrinks back after departures.
  while (!slots_.empty() && !slots_.back().known) slots_.pop_back();
}

const std::string& MemberTable::NameOf(uint32_t id) const { return Names().Get(id); }

const std::string& MemberTable::AddrOf(const Member& m) const { return Addrs().Get(m.addr); }

void MemberTable::SetAddr(Member& m, std::string_view addr) {
  const uint32_t old = m.addr;
  m.addr = Addrs().Acquire(addr);
  Addrs().Release(old);
}

const std::string& MemberTable::MetaOf(uint32_t id) const {
  auto it = metas_.find(id);
  return it == metas_.end() ? kEmpty : it->second;
}

void MemberTable::SetMeta(uint32_t id, std::string_view meta) {
  if (meta.empty()) {
    metas_.erase(id);
  } else {
    metas_[id] = std::string(meta);
  }
}

std::string_view MemberTable::KeyOf(const Member& m) const {
  return std::string_view(Claims().Get(m.claim)).substr(0, kKeySize);
}

std::string_view MemberTable::SigOf(const Member& m) const {
  const std::string& claim = Claims().Get(m.claim);
  return claim.size() > kKeySize ? std::string_view(claim).substr(kKeySize) : std::string_view();
}

void MemberTable::SetClaim(Member& m, std::string_view key, std::string_view sig) {
  std::string claim;
  if (!key.empty()) {
    claim.reserve(key.size() + sig.size());
    claim.append(key).append(sig);
  }
  const uint32_t old = m.claim;
  m.claim = Claims().Acquire(claim);
  Claims().Release(old);
}

}  // namespace hivemesh::membership
