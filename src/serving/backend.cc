#include "serving/backend.h"

namespace hivemesh {

const BackendEnvironment& BackendContext::env() const {
  static const BackendEnvironment* const defaults = new BackendEnvironment();
  return environment != nullptr ? *environment : *defaults;
}

void BackendRegistry::Register(std::string name, BackendFactory factory) {
  factories_[std::move(name)] = std::move(factory);
}

const BackendFactory* BackendRegistry::Find(const std::string& name) const {
  auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : &it->second;
}

std::vector<std::string> BackendRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : factories_) names.push_back(name);
  return names;
}

}  // namespace hivemesh
