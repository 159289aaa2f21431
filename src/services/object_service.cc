#include "services/object_service.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "identity/key_file.h"

namespace hivemesh::services {

absl::StatusOr<std::unique_ptr<ObjectService>> ObjectService::Open(std::string path,
                                                                   std::string self) {
  ObjectStore store(std::move(self));
  if (access(path.c_str(), F_OK) == 0) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) return absl::FailedPreconditionError(StrCat(path, ": cannot read it"));
    absl::StatusOr<std::vector<StoredObject>> objects = DecodeObjects(text.str());
    if (!objects.ok()) {
      return absl::FailedPreconditionError(StrCat(path, ": ", MessageOf(objects.status())));
    }
    for (const StoredObject& o : *objects) HM_RETURN_IF_ERROR(store.Merge(o).status());
  }
  return std::unique_ptr<ObjectService>(new ObjectService(std::move(path), std::move(store)));
}

absl::Status ObjectService::CommitLocked(ObjectStore next) {
  HM_RETURN_IF_ERROR(identity::ReplaceFile(path_, EncodeObjects(next.All()), 0600));
  store_ = std::move(next);
  fingerprint_.reset();
  return absl::OkStatus();
}

absl::StatusOr<ObjectService::Applied> ObjectService::Apply(std::string_view yaml, int64_t now_ms) {
  HM_ASSIGN_OR_RETURN(Parsed parsed, ParseManifests(yaml));
  Applied out;
  out.warnings = std::move(parsed.warnings);
  {
    absl::MutexLock lock(&mu_);
    ObjectStore next = store_;
    next.ForgetTombstones(now_ms);
    for (const Manifest& m : parsed.manifests) {
      HM_ASSIGN_OR_RETURN(StoredObject o, next.Apply(m, now_ms));
      out.objects.push_back(std::move(o));
    }
    HM_RETURN_IF_ERROR(CommitLocked(std::move(next)));
  }
  if (changed_) changed_(true);
  return out;
}

absl::StatusOr<std::vector<StoredObject>> ObjectService::DeleteManifests(std::string_view yaml,
                                                                         int64_t now_ms) {
  HM_ASSIGN_OR_RETURN(Parsed parsed, ParseManifests(yaml));
  std::vector<StoredObject> out;
  {
    absl::MutexLock lock(&mu_);
    ObjectStore next = store_;
    for (const Manifest& m : parsed.manifests) {
      HM_ASSIGN_OR_RETURN(StoredObject o, next.Delete(m.kind, m.name, now_ms));
      out.push_back(std::move(o));
    }
    HM_RETURN_IF_ERROR(CommitLocked(std::move(next)));
  }
  if (changed_) changed_(true);
  return out;
}

absl::StatusOr<StoredObject> ObjectService::Delete(Kind kind, std::string_view name,
                                                   int64_t now_ms) {
  StoredObject out;
  {
    absl::MutexLock lock(&mu_);
    ObjectStore next = store_;
    HM_ASSIGN_OR_RETURN(out, next.Delete(kind, name, now_ms));
    HM_RETURN_IF_ERROR(CommitLocked(std::move(next)));
  }
  if (changed_) changed_(true);
  return out;
}

std::vector<StoredObject> ObjectService::Live() const {
  absl::MutexLock lock(&mu_);
  return store_.Live();
}

std::optional<StoredObject> ObjectService::Find(Kind kind, std::string_view name) const {
  absl::MutexLock lock(&mu_);
  return store_.Find(kind, name);
}

std::string ObjectService::Digest() const {
  absl::MutexLock lock(&mu_);
  return store_.Digest();
}

uint64_t ObjectService::Fingerprint() const {
  absl::MutexLock lock(&mu_);
  // Asked at every member event and load report: computed once per change.
  if (fingerprint_) return *fingerprint_;
  uint64_t out = 0;
  if (!store_.empty()) {
    const std::optional<std::string> digest = HexDecode(store_.Digest());
    for (size_t i = 0; digest && i < 8; ++i) {
      out = (out << 8) | static_cast<unsigned char>((*digest)[i]);
    }
    if (out == 0) out = 1;  // 0 says "no objects"
  }
  fingerprint_ = out;
  return out;
}

std::vector<IndexEntry> ObjectService::Index() const {
  absl::MutexLock lock(&mu_);
  return store_.Index();
}

std::vector<ObjectKey> ObjectService::Wanted(const std::vector<IndexEntry>& peer) const {
  absl::MutexLock lock(&mu_);
  return store_.Wanted(peer);
}

std::vector<StoredObject> ObjectService::Export(const std::vector<ObjectKey>& keys) const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredObject> out;
  for (const ObjectKey& k : keys) {
    if (const StoredObject* o = store_.Held(k)) out.push_back(*o);
  }
  return out;
}

absl::StatusOr<size_t> ObjectService::Merge(const std::vector<StoredObject>& objects) {
  size_t taken = 0;
  {
    absl::MutexLock lock(&mu_);
    ObjectStore next = store_;
    for (const StoredObject& o : objects) {
      // A peer's object counts only if it is what it says: one manifest of that kind and name.
      if (!o.deleted) {
        absl::StatusOr<Parsed> parsed = ParseManifests(o.text);
        if (!parsed.ok() || parsed->manifests.size() != 1 ||
            parsed->manifests[0].key() != o.key()) {
          continue;
        }
      }
      HM_ASSIGN_OR_RETURN(bool took, next.Merge(o));
      if (took) ++taken;
    }
    if (taken == 0) return taken;
    HM_RETURN_IF_ERROR(CommitLocked(std::move(next)));
  }
  if (changed_) changed_(false);
  return taken;
}

}  // namespace hivemesh::services
