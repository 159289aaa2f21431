#include "cli/model_metadata.h"

#include <simdjson.h>

#include "base/strings.h"

namespace hivemesh::cli {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;

absl::Status Unreadable(std::string_view what) {
  return absl::InternalError(StrCat("the node's model metadata cannot be read: ", what));
}

absl::StatusOr<std::vector<TensorMetadata>> ParseTensors(element doc, const char* key) {
  std::vector<TensorMetadata> out;
  array list;
  if (doc[key].get(list) != simdjson::SUCCESS) return out;  // a model may list none
  for (element t : list) {
    TensorMetadata m;
    std::string_view name, datatype;
    array shape;
    if (t["name"].get(name) != simdjson::SUCCESS ||
        t["datatype"].get(datatype) != simdjson::SUCCESS ||
        t["shape"].get(shape) != simdjson::SUCCESS) {
      return Unreadable(StrCat("an entry of \"", key, "\" lacks name, datatype or shape"));
    }
    m.name = std::string(name);
    m.datatype = std::string(datatype);
    for (element d : shape) {
      int64_t v;
      if (d.get(v) != simdjson::SUCCESS) return Unreadable(StrCat(m.name, ": bad shape"));
      m.shape.push_back(v);
    }
    bool optional = false;
    if (t["optional"].get(optional) == simdjson::SUCCESS) m.optional = optional;
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

absl::StatusOr<ModelMetadata> ParseModelMetadata(std::string_view json) {
  simdjson::dom::parser parser;
  element doc;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS) {
    return Unreadable("not JSON");
  }
  ModelMetadata m;
  std::string_view s;
  if (doc["name"].get(s) != simdjson::SUCCESS) return Unreadable("no \"name\"");
  m.name = std::string(s);
  if (doc["platform"].get(s) == simdjson::SUCCESS) m.platform = std::string(s);
  array versions;
  if (doc["versions"].get(versions) == simdjson::SUCCESS) {
    for (element v : versions) {
      if (v.get(s) == simdjson::SUCCESS) m.versions.emplace_back(s);
    }
  }
  absl::StatusOr<std::vector<TensorMetadata>> inputs = ParseTensors(doc, "inputs");
  if (!inputs.ok()) return inputs.status();
  absl::StatusOr<std::vector<TensorMetadata>> outputs = ParseTensors(doc, "outputs");
  if (!outputs.ok()) return outputs.status();
  m.inputs = *std::move(inputs);
  m.outputs = *std::move(outputs);
  return m;
}

std::string ModelPath(std::string_view model, std::string_view version, std::string_view suffix) {
  if (version.empty()) return StrCat("/v2/models/", model, suffix);
  return StrCat("/v2/models/", model, "/versions/", version, suffix);
}

}  // namespace hivemesh::cli
