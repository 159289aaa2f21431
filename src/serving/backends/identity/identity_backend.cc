#include "serving/backends/identity/identity_backend.h"

#include <charconv>
#include <thread>

#include "base/strings.h"

namespace hivemesh {
namespace {

class IdentityBackend final : public Backend {
 public:
  IdentityBackend(const ModelConfig& config, int64_t delay_us)
      : config_(config), delay_us_(delay_us) {}

  absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) override {
    if (delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us_));
    for (size_t i = 0; i < config_.inputs.size() && i < config_.outputs.size(); ++i) {
      for (const Tensor& in : inputs) {
        if (in.name() != config_.inputs[i].name) continue;
        Tensor out = in;  // shares the bytes; no copy
        out.set_name(config_.outputs[i].name);
        outputs->push_back(std::move(out));
      }
    }
    return absl::OkStatus();
  }

 private:
  const ModelConfig& config_;
  const int64_t delay_us_;
};

absl::StatusOr<std::unique_ptr<Backend>> MakeIdentity(const BackendContext& ctx) {
  const ModelConfig& c = ctx.config;
  if (c.inputs.size() != c.outputs.size()) {
    return absl::InvalidArgumentError(StrCat("outputs: identity needs one output per input (",
                                             c.inputs.size(), " inputs, ", c.outputs.size(),
                                             " outputs)"));
  }
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (c.inputs[i].type != c.outputs[i].type || c.inputs[i].dims != c.outputs[i].dims) {
      return absl::InvalidArgumentError(
          StrCat("outputs[", i, "]: identity output must have input ", i, "'s datatype and shape"));
    }
  }
  int64_t delay_us = 0;
  const std::string delay = c.Option("delay_us", "0");
  auto [ptr, ec] = std::from_chars(delay.data(), delay.data() + delay.size(), delay_us);
  if (ec != std::errc() || ptr != delay.data() + delay.size() || delay_us < 0) {
    return absl::InvalidArgumentError("options.delay_us: '" + delay +
                                      "' is not a non-negative integer");
  }
  return std::make_unique<IdentityBackend>(c, delay_us);
}

}  // namespace

void RegisterIdentityBackend(BackendRegistry& registry) {
  registry.Register("identity", MakeIdentity);
}

}  // namespace hivemesh
