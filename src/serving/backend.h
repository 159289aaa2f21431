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

class MemoryBudget;
class Rejections;

class Backend {
 public:
  virtual ~Backend() = default;

  // Runs one request. `inputs` were checked against the model config: every input is declared,
  // every required input present, types and shapes agree with the config and data sizes agree
  // with shapes. Appends every output the model produces (the caller selects the requested ones).
  // An error status here is the request's error (e.g. an undecodable image -> InvalidArgument).
  virtual absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) = 0;
};

// What the node gives every backend it makes: limits and accounts shared by all models.
struct BackendEnvironment {
  // The node's memory budget for requests in flight (base/memory_budget.h). A backend reserves
  // from it, before allocating, what a request's content can make large (a decoded image and
  // the work on it). Null: nothing is reserved.
  std::shared_ptr<MemoryBudget> memory_budget;
  // Where refusals are counted and logged (hivemesh_rejected_total). Null: not counted.
  std::shared_ptr<Rejections> rejections;
  // Most pixels (width x height) of an image the vision backends decode, for models whose
  // config does not set options.max_image_pixels (AgentConfig::max_image_pixels).
  int64_t max_image_pixels = int64_t{7680} * 4320;
};

struct BackendContext {
  const ModelConfig& config;
  std::string version_path;  // <repo>/<model>/<version>: where the version's files are
  // The registry's environment, which outlives every backend. Null: the defaults (no budget,
  // nothing counted).
  const BackendEnvironment* environment = nullptr;

  // *environment, or the defaults.
  const BackendEnvironment& env() const;
};

// Builds a backend for one worker instance, or says why the config cannot be served (naming
// the field, e.g. "options.file: ..."). Called once per instance at load time.
using BackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<Backend>>(const BackendContext&)>;

// Thread safety: Register and SetEnvironment before any lookup; lookups are then safe from any
// thread.
class BackendRegistry {
 public:
  void Register(std::string name, BackendFactory factory);
  const BackendFactory* Find(const std::string& name) const;
  std::vector<std::string> Names() const;

  // What every backend made from this registry's factories is given (BackendContext).
  void SetEnvironment(BackendEnvironment environment) { environment_ = std::move(environment); }
  const BackendEnvironment& environment() const { return environment_; }

 private:
  std::map<std::string, BackendFactory> factories_;
  BackendEnvironment environment_;
};

// Registers identity, onnx, hog-people and cascade.
void RegisterBuiltinBackends(BackendRegistry& registry);

}  // namespace hivemesh
