// ObjectService: a node's applied objects (object_store.h) behind a lock, kept in its state
// folder (<state>/objects, one JSON line per object, 0600, replaced atomically before an apply is
// answered) so that they survive restarts (docs/services.md, "Applied state").
//
// An apply or a delete of a manifest takes all its objects or none: each is parsed first (an
// error names the document and the field), applied to a copy of the store, the copy written to
// disk, and only then put in place.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "services/object_store.h"

namespace hivemesh::services {

class ObjectService {
 public:
  // The objects kept at `path` (none if the file is not there), for the node `self`. Errors
  // name the file and the line.
  static absl::StatusOr<std::unique_ptr<ObjectService>> Open(std::string path, std::string self);

  struct Applied {
    std::vector<StoredObject> objects;  // as kept: with their new versions
    std::vector<std::string> warnings;  // fields hivemesh does not use
  };
  // Every object of `yaml` (ParseManifests), applied at `now_ms`.
  absl::StatusOr<Applied> Apply(std::string_view yaml, int64_t now_ms);
  // Deletes every object `yaml` names (by kind and name; their specs are not read). NOT_FOUND
  // names the first that is not there, and nothing is deleted.
  absl::StatusOr<std::vector<StoredObject>> DeleteManifests(std::string_view yaml, int64_t now_ms);
  absl::StatusOr<StoredObject> Delete(Kind kind, std::string_view name, int64_t now_ms);

  std::vector<StoredObject> Live() const;
  std::optional<StoredObject> Find(Kind kind, std::string_view name) const;
  std::string Digest() const;

  // Anti-entropy (docs/services.md): what a node announces (the digest's first 8 bytes; 0 for
  // an empty store), its index, the objects a peer asks for (tombstones too), and the objects a
  // peer sent, taken where newer (written before they count). Merge returns how many it took.
  uint64_t Fingerprint() const;
  std::vector<IndexEntry> Index() const;
  std::vector<ObjectKey> Wanted(const std::vector<IndexEntry>& peer) const;
  std::vector<StoredObject> Export(const std::vector<ObjectKey>& keys) const;
  // An object whose manifest does not parse as one of its own kind and name is left out.
  absl::StatusOr<size_t> Merge(const std::vector<StoredObject>& objects);

  // Runs after every change (the agent tells the mesh): `local` for an apply or delete made
  // here, false for objects merged from a peer. REQUIRES: called before any change.
  void OnChange(std::function<void(bool local)> changed) { changed_ = std::move(changed); }

 private:
  ObjectService(std::string path, ObjectStore store)
      : path_(std::move(path)), store_(std::move(store)) {}
  // Writes `next` and puts it in place.
  absl::Status CommitLocked(ObjectStore next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  mutable absl::Mutex mu_;
  ObjectStore store_ ABSL_GUARDED_BY(mu_);
  mutable std::optional<uint64_t> fingerprint_ ABSL_GUARDED_BY(mu_);  // of store_, once asked
  std::function<void(bool local)> changed_;
};

}  // namespace hivemesh::services
