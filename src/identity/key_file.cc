#include "identity/key_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/status_macros.h"
#include "base/strings.h"

namespace hivemesh::identity {
namespace {

std::string Errno() { return std::strerror(errno); }

// Writes `data` to the new file `tmp` (mode `mode`) and syncs it; removes it on failure.
absl::Status WriteTemp(const std::string& tmp, std::string_view data, mode_t mode) {
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        StrCat(tmp, ": ", Errno(), " (set --state-dir to a folder this user may write)"));
  }
  const bool written =
      write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) && fsync(fd) == 0;
  close(fd);
  if (!written) {
    unlink(tmp.c_str());
    return absl::FailedPreconditionError(StrCat(tmp, ": cannot write it"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MakeStateFolder(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(StrCat("state folder ", dir, ": ", ec.message(),
                                                " (set --state-dir to a folder this user may "
                                                "write)"));
  }
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);
  return absl::OkStatus();
}

absl::Status ReplaceFile(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = StrCat(path, ".", getpid(), ".tmp");
  unlink(tmp.c_str());
  if (absl::Status s = WriteTemp(tmp, data, mode); !s.ok()) return s;
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = Errno();
    unlink(tmp.c_str());
    return absl::FailedPreconditionError(StrCat(path, ": ", why));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(StrCat(what, " ", path, ": ", Errno()));
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    return absl::FailedPreconditionError(
        StrCat(what, " ", path, " can be read by other users (mode ", mode, "); chmod 600 it"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(StrCat(what, " ", path, ": cannot read it"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<NodeKey> ReadKeyFile(const std::string& path, std::string_view what) {
  HM_ASSIGN_OR_RETURN(const std::string text, ReadSecretFile(path, what));
  absl::StatusOr<NodeKey> key = NodeKey::FromPem(text);
  if (!key.ok()) {
    return absl::FailedPreconditionError(
        StrCat(what, " ", path, ": ", MessageOf(key.status()),
               what == "node key" ? "; move it away to let the node make a new one (its name "
                                    "stays bound to the old key until the mesh forgets it)"
                                  : ""));
  }
  return key;
}

absl::StatusOr<NodeKey> LoadOrCreateNodeKey(const std::string& path) {
  if (access(path.c_str(), F_OK) == 0) return ReadKeyFile(path);
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) HM_RETURN_IF_ERROR(MakeStateFolder(dir.string()));
  // Written to a temporary name, then linked to its own: link() fails if another process got
  // there first, and then its key is the one.
  const NodeKey key = NodeKey::Generate();
  const std::string tmp = StrCat(path, ".", getpid(), ".tmp");
  if (absl::Status s = WriteTemp(tmp, key.ToPem(), 0600); !s.ok()) {
    return absl::FailedPreconditionError(StrCat("node key ", MessageOf(s)));
  }
  const int linked = link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  unlink(tmp.c_str());
  if (linked == 0) return key;
  if (link_errno == EEXIST) return ReadKeyFile(path);
  errno = link_errno;
  return absl::FailedPreconditionError(StrCat("node key ", path, ": ", Errno()));
}

}  // namespace hivemesh::identity
