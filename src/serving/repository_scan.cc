#include "serving/repository_scan.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/strings.h"

namespace hivemesh {
namespace fs = std::filesystem;
namespace {

// FNV-1a, 64 bits: stable across runs and cheap; collisions only make a change go unnoticed.
class Hasher {
 public:
  Hasher& Add(std::string_view bytes) {
    for (unsigned char c : bytes) {
      h_ ^= c;
      h_ *= 0x100000001b3ull;
    }
    h_ ^= 0xff;  // field separator
    h_ *= 0x100000001b3ull;
    return *this;
  }
  Hasher& Add(uint64_t v) { return Add(std::string_view(reinterpret_cast<const char*>(&v), 8)); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

// The files under `dir`, recursively, by relative path: size and modification time.
uint64_t FolderFingerprint(const fs::path& dir, uint64_t config_hash) {
  std::vector<std::tuple<std::string, uint64_t, uint64_t>> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code fe;
    if (!it->is_regular_file(fe)) continue;
    const uint64_t size = it->file_size(fe);
    const auto mtime = it->last_write_time(fe).time_since_epoch().count();
    files.emplace_back(fs::relative(it->path(), dir, fe).string(), size,
                       static_cast<uint64_t>(mtime));
  }
  std::sort(files.begin(), files.end());
  Hasher h;
  h.Add(config_hash);
  for (const auto& [path, size, mtime] : files) h.Add(path).Add(size).Add(mtime);
  return h.value();
}

}  // namespace

absl::StatusOr<ModelFolders> ListModelFolders(const std::string& repo) {
  std::error_code ec;
  if (!fs::is_directory(repo, ec)) {
    return absl::NotFoundError(StrCat("model repository '", repo, "' is not a readable folder"));
  }
  ModelFolders out;
  for (const fs::directory_entry& e : fs::directory_iterator(repo, ec)) {
    std::error_code de;
    std::string name = e.path().filename().string();
    if (!e.is_directory(de) || name.starts_with(".")) continue;
    (IsValidModelName(name) ? out.names : out.invalid).push_back(std::move(name));
  }
  if (ec) {
    return absl::UnavailableError(StrCat("model repository '", repo, "': ", ec.message()));
  }
  std::sort(out.names.begin(), out.names.end());
  std::sort(out.invalid.begin(), out.invalid.end());
  return out;
}

std::vector<std::string> RepositoryRoots(const std::string& path) {
  std::vector<std::string> roots;
  auto add = [&](std::string s) {
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    // "." or "/" would match everywhere; such a repository's paths stay as they are.
    if (s.size() <= 1 || s == "..") return;
    if (std::find(roots.begin(), roots.end(), s) == roots.end()) roots.push_back(std::move(s));
  };
  add(path);
  add(fs::path(path).lexically_normal().string());
  std::error_code ec;
  if (fs::path abs = fs::absolute(path, ec); !ec) add(abs.lexically_normal().string());
  if (fs::path canonical = fs::weakly_canonical(path, ec); !ec) add(canonical.string());
  std::sort(roots.begin(), roots.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return roots;
}

std::string RelativeToRepository(std::string_view message, const std::vector<std::string>& roots) {
  auto path_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '/' || c == '~';
  };
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  while (i < message.size()) {
    bool matched = false;
    if (i == 0 || !path_char(message[i - 1])) {
      for (const std::string& root : roots) {
        const std::string_view rest = message.substr(i);
        if (rest.size() > root.size() && rest.starts_with(root) && rest[root.size()] == '/') {
          i += root.size() + 1;
          matched = true;
          break;
        }
      }
    }
    if (!matched) out.push_back(message[i++]);
  }
  return out;
}

uint64_t ModelOnDisk::Fingerprint() const {
  Hasher h;
  h.Add(name).Add(uint64_t{exists}).Add(uint64_t{config_read}).Add(config_text);
  for (const auto& [v, fp] : versions) h.Add(static_cast<uint64_t>(v)).Add(fp);
  return h.value();
}

ModelOnDisk ScanModel(const std::string& repo, const std::string& name) {
  ModelOnDisk m;
  m.name = name;
  // A name that breaks the rule could be a path ("..", "/etc"): it is not looked up at all.
  if (!IsValidModelName(name)) return m;
  const fs::path dir = fs::path(repo) / name;
  m.dir = dir.string();
  m.config_path = (dir / "config.yaml").string();
  std::error_code ec;
  m.exists = fs::is_directory(dir, ec);
  if (!m.exists) return m;
  if (std::ifstream in(m.config_path); in) {
    std::stringstream text;
    text << in.rdbuf();
    m.config_text = text.str();
    m.config_read = true;
  }
  const uint64_t config_hash = Hasher().Add(m.config_text).value();
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    std::error_code de;
    int64_t version;
    if (!e.is_directory(de) || !ParseVersion(e.path().filename().string(), &version)) continue;
    m.versions[version] = FolderFingerprint(e.path(), config_hash);
  }
  return m;
}

}  // namespace hivemesh
