#include "services/object_store.h"

#include <openssl/evp.h>
#include <simdjson.h>

#include <cstdlib>
#include <tuple>

#include "base/hex.h"
#include "base/strings.h"
#include "codec/json_writer.h"

namespace hivemesh::services {
namespace {

// Unix ms up to the year 2100: later versions are refused from peers and files.
constexpr int64_t kMaxUnixMs = 4'102'444'800'000;

}  // namespace

bool operator<(const Version& a, const Version& b) {
  return std::tie(a.unix_ms, a.counter, a.origin) < std::tie(b.unix_ms, b.counter, b.origin);
}
bool operator==(const Version& a, const Version& b) {
  return std::tie(a.unix_ms, a.counter, a.origin) == std::tie(b.unix_ms, b.counter, b.origin);
}

Version ObjectStore::Next(int64_t now_ms) {
  if (now_ms > clock_ms_) {
    clock_ms_ = now_ms;
    clock_counter_ = 0;
  } else {
    ++clock_counter_;
  }
  return Version{clock_ms_, clock_counter_, self_};
}

void ObjectStore::Saw(const Version& v) {
  if (v.unix_ms > clock_ms_ || (v.unix_ms == clock_ms_ && v.counter > clock_counter_)) {
    clock_ms_ = v.unix_ms;
    clock_counter_ = v.counter;
  }
}

absl::StatusOr<StoredObject> ObjectStore::Apply(const Manifest& manifest, int64_t now_ms) {
  const ObjectKey key{manifest.kind, manifest.name};
  if (objects_.count(key) == 0 && objects_.size() >= kMaxObjects) {
    return absl::ResourceExhaustedError(
        StrCat("the mesh holds ", kMaxObjects, " objects already; delete some first"));
  }
  StoredObject o{manifest.kind, manifest.name, Next(now_ms), false, manifest.text};
  objects_[key] = o;
  return o;
}

absl::StatusOr<StoredObject> ObjectStore::Delete(Kind kind, std::string_view name, int64_t now_ms) {
  auto it = objects_.find(ObjectKey{kind, std::string(name)});
  if (it == objects_.end() || it->second.deleted) {
    return absl::NotFoundError(StrCat("no ", KindName(kind), " named ", name));
  }
  it->second.version = Next(now_ms);
  it->second.deleted = true;
  it->second.text.clear();
  return it->second;
}

absl::StatusOr<bool> ObjectStore::Merge(const StoredObject& object) {
  auto it = objects_.find(object.key());
  if (it != objects_.end() && !(it->second.version < object.version)) return false;
  if (it == objects_.end() && objects_.size() >= kMaxObjects) {
    return absl::ResourceExhaustedError(
        StrCat("this node holds ", kMaxObjects, " objects already"));
  }
  Saw(object.version);
  objects_[object.key()] = object;
  return true;
}

std::vector<StoredObject> ObjectStore::Live() const {
  std::vector<StoredObject> out;
  for (const auto& [key, o] : objects_) {
    if (!o.deleted) out.push_back(o);
  }
  return out;
}

std::vector<StoredObject> ObjectStore::All() const {
  std::vector<StoredObject> out;
  for (const auto& [key, o] : objects_) out.push_back(o);
  return out;
}

std::optional<StoredObject> ObjectStore::Find(Kind kind, std::string_view name) const {
  auto it = objects_.find(ObjectKey{kind, std::string(name)});
  if (it == objects_.end() || it->second.deleted) return std::nullopt;
  return it->second;
}

std::string ObjectStore::Digest() const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) std::abort();
  for (const auto& [key, o] : objects_) {
    // Each field ends with a NUL, so no two different lists hash alike.
    const std::string entry =
        StrCat(KindName(o.kind), std::string_view("\0", 1), o.name, std::string_view("\0", 1),
               o.version.unix_ms, ".", o.version.counter, ".", o.version.origin,
               std::string_view("\0", 1), o.deleted ? "d" : "l");
    EVP_DigestUpdate(ctx, entry.data(), entry.size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::vector<IndexEntry> ObjectStore::Index() const {
  std::vector<IndexEntry> out;
  for (const auto& [key, o] : objects_) out.push_back(IndexEntry{o.kind, o.name, o.version});
  return out;
}

std::vector<ObjectKey> ObjectStore::Wanted(const std::vector<IndexEntry>& peer) const {
  std::vector<ObjectKey> out;
  for (const IndexEntry& e : peer) {
    auto it = objects_.find(ObjectKey{e.kind, e.name});
    if (it == objects_.end() || it->second.version < e.version) out.emplace_back(e.kind, e.name);
  }
  return out;
}

size_t ObjectStore::ForgetTombstones(int64_t now_ms) {
  return std::erase_if(objects_, [now_ms](const auto& entry) {
    return entry.second.deleted && now_ms - entry.second.version.unix_ms > kTombstoneLifeMs;
  });
}

std::string EncodeObjects(const std::vector<StoredObject>& objects) {
  std::string out;
  for (const StoredObject& o : objects) {
    JsonWriter w(out);
    w.BeginObject();
    w.Key("kind").String(KindName(o.kind));
    w.Key("name").String(o.name);
    w.Key("ms").Int(o.version.unix_ms);
    w.Key("counter").Uint(o.version.counter);
    w.Key("origin").String(o.version.origin);
    w.Key("deleted").Bool(o.deleted);
    w.Key("text").String(o.text);
    w.EndObject();
    out += '\n';
  }
  return out;
}

absl::StatusOr<std::vector<StoredObject>> DecodeObjects(std::string_view text) {
  std::vector<StoredObject> out;
  simdjson::dom::parser parser;
  size_t line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    const auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(StrCat("line ", line_no, ": ", why));
    };
    if (out.size() >= kMaxObjects) return bad(StrCat("more than ", kMaxObjects, " objects"));
    if (line.size() > 2 * kMaxManifestBytes) return bad("an object too large");
    simdjson::dom::object o;
    std::string_view kind, name, origin, body;
    int64_t ms = 0;
    uint64_t counter = 0;
    bool deleted = false;
    if (parser.parse(line.data(), line.size()).get(o) != simdjson::SUCCESS || o["kind"].get(kind) ||
        o["name"].get(name) || o["ms"].get(ms) || o["counter"].get(counter) ||
        o["origin"].get(origin) || o["deleted"].get(deleted) || o["text"].get(body)) {
      return bad("not an object of kind, name, ms, counter, origin, deleted and text");
    }
    std::optional<Kind> k = ParseKind(kind);
    if (!k || KindName(*k) != kind) return bad(StrCat("unknown kind '", kind.substr(0, 64), "'"));
    if (!CheckName(name, "name").ok()) return bad("a name that is not a DNS label");
    if (ms < 0 || ms > kMaxUnixMs || counter > UINT32_MAX) return bad("a version out of range");
    if (origin.empty() || origin.size() > 63) return bad("an origin that is no node name");
    if (body.size() > kMaxManifestBytes) return bad("a manifest too large");
    if (deleted != body.empty()) return bad("a tombstone holds no manifest, a live object one");
    out.push_back(StoredObject{*k, std::string(name),
                               Version{ms, static_cast<uint32_t>(counter), std::string(origin)},
                               deleted, std::string(body)});
  }
  return out;
}

namespace {

// "<kind> <name>" at the start of `fields`: the key, or why not.
absl::StatusOr<ObjectKey> KeyOf(const std::vector<std::string_view>& fields, size_t line_no) {
  const auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("line ", line_no, ": ", why));
  };
  if (fields.size() < 2) return bad("not a kind and a name");
  std::optional<Kind> kind = ParseKind(fields[0]);
  if (!kind || KindName(*kind) != fields[0]) {
    return bad(StrCat("unknown kind '", fields[0].substr(0, 64), "'"));
  }
  if (!CheckName(fields[1], "name").ok()) return bad("a name that is not a DNS label");
  return ObjectKey{*kind, std::string(fields[1])};
}

}  // namespace

std::string EncodeIndex(const std::vector<IndexEntry>& index) {
  std::string out;
  for (const IndexEntry& e : index) {
    StrAppend(&out, KindName(e.kind), " ", e.name, " ", e.version.unix_ms, " ", e.version.counter,
              " ", e.version.origin, "\n");
  }
  return out;
}

absl::StatusOr<std::vector<IndexEntry>> DecodeIndex(std::string_view text) {
  std::vector<IndexEntry> out;
  size_t line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    const std::vector<std::string_view> f = Split(line, ' ');
    const auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(StrCat("line ", line_no, ": ", why));
    };
    if (out.size() >= kMaxObjects) return bad(StrCat("more than ", kMaxObjects, " entries"));
    if (f.size() != 5) return bad("not <kind> <name> <ms> <counter> <origin>");
    absl::StatusOr<ObjectKey> key = KeyOf(f, line_no);
    if (!key.ok()) return key.status();
    std::optional<uint64_t> ms = ParseUint(f[2]), counter = ParseUint(f[3]);
    if (!ms || *ms > static_cast<uint64_t>(kMaxUnixMs) || !counter || *counter > UINT32_MAX) {
      return bad("a version out of range");
    }
    if (f[4].empty() || f[4].size() > 63) return bad("an origin that is no node name");
    out.push_back(IndexEntry{
        key->first, key->second,
        Version{static_cast<int64_t>(*ms), static_cast<uint32_t>(*counter), std::string(f[4])}});
  }
  return out;
}

std::string EncodeKeys(const std::vector<ObjectKey>& keys) {
  std::string out;
  for (const ObjectKey& k : keys) StrAppend(&out, KindName(k.first), " ", k.second, "\n");
  return out;
}

absl::StatusOr<std::vector<ObjectKey>> DecodeKeys(std::string_view text) {
  std::vector<ObjectKey> out;
  size_t line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    if (out.size() >= kMaxObjects) {
      return absl::InvalidArgumentError(StrCat("line ", line_no, ": more than ", kMaxObjects));
    }
    const std::vector<std::string_view> f = Split(line, ' ');
    if (f.size() != 2) {
      return absl::InvalidArgumentError(StrCat("line ", line_no, ": not <kind> <name>"));
    }
    absl::StatusOr<ObjectKey> key = KeyOf(f, line_no);
    if (!key.ok()) return key.status();
    out.push_back(*std::move(key));
  }
  return out;
}

}  // namespace hivemesh::services
