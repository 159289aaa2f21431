// The applied objects (docs/services.md, "Applied state"): what every node keeps of the
// manifests applied anywhere in the mesh, as a pure kernel. The time is passed in; nothing is
// read from the clock, the disk or the network.
//
// - An object is (kind, name) -> its manifest text, a version and whether it is deleted (a
//   tombstone). Versions are hybrid logical clocks: (unix ms, counter, origin node); the larger
//   one wins on every node, so applies of one object at different nodes converge to the same one
//   everywhere, whatever order they arrive in.
// - Apply and Delete make the next version here: past the clock, and past every version this
//   store has seen (also from other nodes), so a node whose clock lags still overrides what it
//   was shown.
// - Merge takes an object from another node if it is newer than the one held.
// - Digest and Index are what anti-entropy compares; Wanted says which of a peer's objects to
//   pull.
// - Tombstones are kept kTombstoneLife (a node offline meanwhile does not bring the object back),
//   then forgotten.
//
// Thread safety: none; the caller serializes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "services/manifest.h"

namespace hivemesh::services {

inline constexpr int64_t kTombstoneLifeMs = 7LL * 86400 * 1000;
inline constexpr size_t kMaxObjects = 1024;

struct Version {
  int64_t unix_ms = 0;
  uint32_t counter = 0;
  std::string origin;  // the node that made it

  // (unix_ms, counter, origin), in that order.
  friend bool operator<(const Version& a, const Version& b);
  friend bool operator==(const Version& a, const Version& b);
};

using ObjectKey = std::pair<Kind, std::string>;  // kind, name

struct StoredObject {
  Kind kind = Kind::kService;
  std::string name;
  Version version;
  bool deleted = false;
  std::string text;  // the manifest (Manifest::text); empty for a tombstone

  ObjectKey key() const { return {kind, name}; }
};

struct IndexEntry {
  Kind kind = Kind::kService;
  std::string name;
  Version version;
};

class ObjectStore {
 public:
  explicit ObjectStore(std::string self) : self_(std::move(self)) {}

  // The next version of `manifest`'s object, made here at `now_ms`. RESOURCE_EXHAUSTED when the
  // store holds kMaxObjects and this is a new one.
  absl::StatusOr<StoredObject> Apply(const Manifest& manifest, int64_t now_ms);
  // A tombstone for (kind, name); NOT_FOUND if no live object has that key.
  absl::StatusOr<StoredObject> Delete(Kind kind, std::string_view name, int64_t now_ms);
  // Takes `object` if its version is newer than the one held (or none is): true if taken.
  // RESOURCE_EXHAUSTED for a new key past kMaxObjects.
  absl::StatusOr<bool> Merge(const StoredObject& object);

  // The live objects (no tombstones), by kind then name; and every object, tombstones too.
  std::vector<StoredObject> Live() const;
  std::vector<StoredObject> All() const;
  std::optional<StoredObject> Find(Kind kind, std::string_view name) const;
  // The object or tombstone held under `key`, if any.
  const StoredObject* Held(const ObjectKey& key) const {
    auto it = objects_.find(key);
    return it == objects_.end() ? nullptr : &it->second;
  }
  bool empty() const { return objects_.empty(); }

  // SHA-256 (hex) over every object's kind, name and version, tombstones included, in key order:
  // two stores with the same digest hold the same versions.
  std::string Digest() const;
  std::vector<IndexEntry> Index() const;
  // Which of `peer`'s entries this store lacks or holds older.
  std::vector<ObjectKey> Wanted(const std::vector<IndexEntry>& peer) const;

  // Forgets tombstones older than kTombstoneLifeMs at `now_ms`. Returns how many.
  size_t ForgetTombstones(int64_t now_ms);

 private:
  Version Next(int64_t now_ms);
  void Saw(const Version& v);

  std::string self_;
  std::map<ObjectKey, StoredObject> objects_;
  int64_t clock_ms_ = 0;  // the largest version seen: the next one made here is past it
  uint32_t clock_counter_ = 0;
};

// The objects as text (one JSON object per line: kind, name, ms, counter, origin, deleted,
// text), for the state folder and for peers; and back, bounded (kMaxObjects, each at most
// kMaxManifestBytes), with errors naming the line.
std::string EncodeObjects(const std::vector<StoredObject>& objects);
absl::StatusOr<std::vector<StoredObject>> DecodeObjects(std::string_view text);

// An index as text, one entry per line: "<kind> <name> <ms> <counter> <origin>"; and back,
// bounded (kMaxObjects lines), errors naming the line. Keys ("<kind> <name>" per line) likewise.
std::string EncodeIndex(const std::vector<IndexEntry>& index);
absl::StatusOr<std::vector<IndexEntry>> DecodeIndex(std::string_view text);
std::string EncodeKeys(const std::vector<ObjectKey>& keys);
absl::StatusOr<std::vector<ObjectKey>> DecodeKeys(std::string_view text);

}  // namespace hivemesh::services
