// libFuzzer target for insight topics and filters (bus/topic.h), which any client sends. The
// input is a filter and a topic split at the first NUL byte. Whatever the bytes: a refusal's
// message is short; what passes keeps the bounds; an accepted topic is an accepted filter that
// matches itself; and Matches agrees with MQTT's rule restated here level by level.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bus/topic.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<std::string_view> Levels(std::string_view s) {
  std::vector<std::string_view> out;
  size_t begin = 0;
  for (;;) {
    const size_t end = s.find('/', begin);
    out.push_back(s.substr(begin, end == std::string_view::npos ? end : end - begin));
    if (end == std::string_view::npos) return out;
    begin = end + 1;
  }
}

// MQTT 5.0 section 4.7, restated over split levels.
bool Reference(std::string_view filter, std::string_view topic) {
  const std::vector<std::string_view> f = Levels(filter), t = Levels(topic);
  if (topic[0] == '$' && (f[0] == "+" || f[0] == "#")) return false;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == "#") return true;
    if (i >= t.size()) return false;
    if (f[i] != "+" && f[i] != t[i]) return false;
  }
  return f.size() == t.size();
}

void CheckOne(std::string_view s, bool filter) {
  const absl::Status status = filter ? hivemesh::bus::CheckFilter(s) : hivemesh::bus::CheckTopic(s);
  if (!status.ok()) {
    Check(status.code() == absl::StatusCode::kInvalidArgument);
    Check(!status.message().empty() && status.message().size() < 600);
    return;
  }
  Check(!s.empty() && s.size() <= hivemesh::bus::kMaxTopicBytes);
  Check(Levels(s).size() <= hivemesh::bus::kMaxTopicLevels);
  for (std::string_view level : Levels(s)) Check(!level.empty());
  if (!filter) {
    Check(hivemesh::bus::CheckFilter(s).ok());
    Check(hivemesh::bus::Matches(s, s));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view filter = input.substr(0, nul);
  const std::string_view topic = nul == std::string_view::npos ? "" : input.substr(nul + 1);
  CheckOne(filter, true);
  CheckOne(topic, false);
  CheckOne(input, false);
  if (hivemesh::bus::CheckFilter(filter).ok() && hivemesh::bus::CheckFilter(topic).ok() &&
      topic.find_first_of("+#") == std::string_view::npos) {
    // Any wildcard-free filter is a topic as far as matching goes ('$' topics included).
    Check(hivemesh::bus::Matches(filter, topic) == Reference(filter, topic));
  }
  return 0;
}
