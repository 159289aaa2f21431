// libFuzzer target for the names a client puts in the repository API and the model paths: the
// model and version name rule (codec/model_name.h) and the REST path parsers for
// /v2/models/... and /v2/repository/models/... (codec/rest_path.h). Whatever the bytes, a
// name accepted is one the rule allows (never empty, ".", "..", a path, a NUL, a '%'), a parsed
// path's names point inside the path and pass the rule, a refusal's message is short and
// printable, and a version accepted reads back as the same text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "codec/model_name.h"
#include "codec/rest_path.h"

namespace {

bool Inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// The rule, restated independently of its implementation.
bool AllowedName(std::string_view s) {
  if (s.empty() || s.size() > 128 || s[0] == '.' || s[0] == '-') return false;
  for (unsigned char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void CheckMessage(const absl::Status& status) {
  const std::string_view m(status.message().data(), status.message().size());
  if (m.empty() || m.size() > 400) __builtin_trap();
  for (unsigned char c : m) {
    if (c < 0x20 || c >= 0x7f) __builtin_trap();
  }
}

void CheckName(std::string_view s) {
  const bool valid = hivemesh::IsValidModelName(s);
  if (valid != AllowedName(s)) __builtin_trap();
  if (valid && (s == "." || s == ".." || s.find('/') != s.npos || s.find('\0') != s.npos ||
                s.find('%') != s.npos)) {
    __builtin_trap();
  }
  const absl::Status checked = hivemesh::CheckModelName(s);
  if (checked.ok() != valid) __builtin_trap();
  if (!checked.ok()) CheckMessage(checked);

  int64_t v = 0;
  if (hivemesh::ParseVersion(s, &v)) {
    if (v <= 0 || std::to_string(v) != s) __builtin_trap();
  } else if (hivemesh::CheckVersionName(s).ok()) {
    __builtin_trap();
  }
  const std::string printable = hivemesh::PrintableName(s);
  if (printable.size() > 40 * 4 + 32) __builtin_trap();
  for (unsigned char c : printable) {
    if (c < 0x20 || c >= 0x7f || c == '\'') __builtin_trap();
  }
}

void CheckPaths(std::string_view rest) {
  absl::StatusOr<hivemesh::ModelPath> model = hivemesh::ParseModelPath(rest);
  if (model.ok()) {
    if (!Inside(model->model, rest) || !Inside(model->version, rest)) __builtin_trap();
    if (!AllowedName(model->model)) __builtin_trap();
    if (!model->version.empty() && !hivemesh::IsValidVersionName(model->version)) __builtin_trap();
  } else {
    const absl::StatusCode code = model.status().code();
    if (code != absl::StatusCode::kNotFound && code != absl::StatusCode::kInvalidArgument) {
      __builtin_trap();
    }
    CheckMessage(model.status());
  }
  absl::StatusOr<hivemesh::RepositoryPath> repo = hivemesh::ParseRepositoryPath(rest);
  if (repo.ok()) {
    if (!Inside(repo->model, rest) || !AllowedName(repo->model)) __builtin_trap();
    const std::string rebuilt =
        std::string(repo->model) + "/" + std::string(hivemesh::RepositoryActionName(repo->action));
    if (rebuilt != rest) __builtin_trap();
  } else {
    const absl::StatusCode code = repo.status().code();
    if (code != absl::StatusCode::kNotFound && code != absl::StatusCode::kInvalidArgument) {
      __builtin_trap();
    }
    CheckMessage(repo.status());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckName(bytes);
  CheckPaths(bytes);
  return 0;
}
