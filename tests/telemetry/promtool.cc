#include "telemetry/promtool.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace hivemesh::test {

std::string FindPromtool() {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "";
  while (!dirs.empty()) {
    const size_t colon = dirs.find(':');
    const std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    if (dir.empty()) continue;
    const std::string candidate = dir + "/promtool";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  if (::access("/usr/bin/promtool", X_OK) == 0) return "/usr/bin/promtool";
  return "";
}

PromtoolResult CheckMetrics(const std::string& text) {
  PromtoolResult result;
  const std::string promtool = FindPromtool();
  if (promtool.empty()) {
    result.output =
        "promtool not found on PATH or at /usr/bin/promtool: run scripts/install-deps.sh "
        "(Debian package prometheus)";
    return result;
  }
  char tmpl[] = "/tmp/hivemesh-metrics-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  if (fd < 0) {
    result.output = "cannot create a temporary file";
    return result;
  }
  ::close(fd);
  std::ofstream(tmpl, std::ios::binary) << text;
  const std::string command = promtool + " check metrics < " + tmpl + " 2>&1";
  FILE* p = ::popen(command.c_str(), "r");
  if (p != nullptr) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) result.output.append(buf, n);
    const int status = ::pclose(p);
    result.ran = WIFEXITED(status) && WEXITSTATUS(status) != 127;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::filesystem::remove(tmpl);
  return result;
}

}  // namespace hivemesh::test
