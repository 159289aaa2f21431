// Runs Prometheus's own checker, `promtool check metrics`, on exposition text. promtool comes
// from Debian's `prometheus` package (scripts/install-deps.sh installs it); a test that needs it
// fails, loudly, when it is missing: it never skips.
#pragma once

#include <string>

namespace hivemesh::test {

// The promtool binary: the first on PATH, else /usr/bin/promtool. Empty if there is none.
std::string FindPromtool();

struct PromtoolResult {
  bool ran = false;  // false: promtool is missing or could not be started
  int exit_code = -1;
  std::string output;  // everything it printed (its complaints)
};

// Pipes `text` through `promtool check metrics`. It passes when exit_code == 0 and output is
// empty.
PromtoolResult CheckMetrics(const std::string& text);

}  // namespace hivemesh::test
