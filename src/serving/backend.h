// Model backends and their registry.
//
// A backend object runs one model version. The runtime creates one object per worker instance
// and calls it from that worker's thread only, so a backend needs no locking of its own.
// Backends are named factories in a BackendRegistry; a model's config.yaml names one.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "serving/model_config.h"
#include "tensor/tensor.h"

namespace hivemesh {

class Backend {
 public:
  virtual ~Backend() = default;

  // Runs one request. `inputs` were checked against the model config: every input is declared,
  // every required input present, types and shapes agree with the config and data sizes agree
  // with shapes. Appends every output the model produces (the caller selects the requested ones).
  // An error status here is the request's error (e.g. an undecodable image -> InvalidArgument).
  virtual absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) = 0;
};

struct BackendContext {
  const ModelConfig& config;
  std::string version_path;  // <repo>/<model>/<version>: where the version's files are
};

// Builds a backend for one worker instance, or says why the config cannot be served (naming
// the field, e.g. "options.file: ..."). Called once per instance at load time.
using BackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<Backend>>(const BackendContext&)>;

// Thread safety: Register before any lookup; lookups are then safe from any thread.
class BackendRegistry {
 public:
  void Register(std::string name, BackendFactory factory);
  const BackendFactory* Find(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, BackendFactory> factories_;
};

// Registers identity, onnx, hog-people and cascade.
void RegisterBuiltinBackends(BackendRegistry& registry);

}  // namespace hivemesh
