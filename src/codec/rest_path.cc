#include "codec/rest_path.h"

#include <array>

#include "codec/model_name.h"

namespace hivemesh {
namespace {

absl::Status NoSuchPath() { return absl::NotFoundError("no such endpoint"); }

}  // namespace

absl::StatusOr<ModelPath> ParseModelPath(std::string_view rest) {
  // <m>[/versions/<v>][/action]: at most four pieces (a fifth means the path is too long). Split
  // in place: this runs for every inference.
  std::array<std::string_view, 5> parts;
  size_t count = 0;
  for (size_t start = 0; count < parts.size();) {
    const size_t slash = rest.find('/', start);
    parts[count++] = rest.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (count == 0 || parts[0].empty() || count == parts.size()) return NoSuchPath();
  ModelPath out;
  out.model = parts[0];
  size_t i = 1;
  if (count >= 3 && parts[1] == "versions") {
    out.version = parts[2];
    if (out.version.empty()) return NoSuchPath();
    i = 3;
  }
  if (i < count) {
    const std::string_view action = parts[i++];
    if (action.empty()) {
      // "<m>/": the model's metadata, as "<m>".
    } else if (action == "infer") {
      out.action = ModelAction::kInfer;
    } else if (action == "ready") {
      out.action = ModelAction::kReady;
    } else if (action == "stats") {
      out.action = ModelAction::kStats;
    } else {
      return NoSuchPath();
    }
  }
  if (i != count) return NoSuchPath();
  if (!IsValidModelName(out.model)) return CheckModelName(out.model);
  if (!out.version.empty() && !IsValidVersionName(out.version)) {
    return CheckVersionName(out.version);
  }
  return out;
}

std::string_view RepositoryActionName(RepositoryAction action) {
  return action == RepositoryAction::kLoad ? "load" : "unload";
}

absl::StatusOr<RepositoryPath> ParseRepositoryPath(std::string_view rest) {
  // <m>/load | <m>/unload
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return NoSuchPath();
  const std::string_view action = rest.substr(slash + 1);
  RepositoryPath out;
  out.model = rest.substr(0, slash);
  if (action == "load") {
    out.action = RepositoryAction::kLoad;
  } else if (action == "unload") {
    out.action = RepositoryAction::kUnload;
  } else {
    return NoSuchPath();
  }
  absl::Status name = CheckModelName(out.model);
  if (!name.ok()) return name;
  return out;
}

}  // namespace hivemesh
