// The node key on disk: `<state dir>/node.key`, PEM, readable by the node's user only (0600).
// Created on the first start and kept across restarts and upgrades: the mesh binds the node's
// name to it, so a node that lost it cannot speak for its name again until the others forget it
// (docs/security.md, "A node that lost its key").
//
// Thread safety: none needed; called once at start-up. Two processes that share a state folder
// and start at once end up with the same key (creation is atomic: the first one written wins).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "identity/node_key.h"

namespace hivemesh::identity {

// The key in `path`, or a new one written there (parent folders created with mode 0700).
// Errors name the path and say what to do: unreadable, not a key, or readable by others (like
// ssh, a private key that group or others can read is refused: chmod 600 it).
absl::StatusOr<NodeKey> LoadOrCreateNodeKey(const std::string& path);

// The key in `path` (PEM, not readable by group or others), with the errors above; `what`
// names it in them ("node key", "issuer key").
absl::StatusOr<NodeKey> ReadKeyFile(const std::string& path, std::string_view what = "node key");
// The text of `path`, a secret: refused if group or others can read it ("chmod 600 it"). `what`
// names it in errors ("gossip keys").
absl::StatusOr<std::string> ReadSecretFile(const std::string& path, std::string_view what);
// Makes folder `dir` (and its parents) if needed, readable by its owner only.
absl::Status MakeStateFolder(const std::string& dir);
// Replaces `path` with `data` atomically: a temporary file in the same folder with mode `mode`,
// synced, renamed over it.
absl::Status ReplaceFile(const std::string& path, std::string_view data, mode_t mode);

}  // namespace hivemesh::identity
