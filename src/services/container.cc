#include "services/container.h"

#include <unistd.h>

#include "base/strings.h"

namespace hivemesh::services {

std::string ContainerName(std::string_view node, std::string_view workload) {
  std::string name = StrCat("hivemesh-", node, "-", workload);
  for (char& c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) c = '-';
  }
  return name;
}

std::vector<std::string> PodmanRun(const std::string& podman, const std::string& name,
                                   const WorkloadSpec& w) {
  std::vector<std::string> argv = {podman, "run",       "--rm", "--replace",      "--name",
                                   name,   "--network", "host", "--stop-timeout", "10"};
  for (const auto& [key, value] : w.env) {
    argv.push_back("--env");
    argv.push_back(key);
  }
  if (!w.command.empty()) {
    argv.push_back("--entrypoint");
    argv.push_back(w.command.front());
  }
  argv.push_back(w.image);
  if (!w.command.empty()) argv.insert(argv.end(), w.command.begin() + 1, w.command.end());
  argv.insert(argv.end(), w.args.begin(), w.args.end());
  return argv;
}

std::vector<std::string> PodmanRemove(const std::string& podman, const std::string& name) {
  return {podman, "rm", "--force", "--time", "0", name};
}

std::optional<std::string> FindInPath(std::string_view program, std::string_view path) {
  if (program.find('/') != std::string_view::npos) {
    std::string p(program);
    if (access(p.c_str(), X_OK) == 0) return p;
    return std::nullopt;
  }
  while (true) {
    const size_t colon = path.find(':');
    const std::string_view dir = path.substr(0, colon);
    const std::string candidate = StrCat(dir.empty() ? std::string_view(".") : dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return std::nullopt;
    path.remove_prefix(colon + 1);
  }
}

}  // namespace hivemesh::services
