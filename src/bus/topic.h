// Insight topics and topic filters (docs/insights.md, "The insight"): what a topic and a filter may
// be, and whether a filter matches a topic, by MQTT's rules (MQTT 5.0 section 4.7), with the
// mesh's own bounds.
//
// - Levels are split by '/'. A topic or a filter has 1..kMaxTopicLevels levels and
//   1..kMaxTopicBytes bytes of UTF-8, with no control character (U+0000..U+001F, U+007F..U+009F).
// - No level is empty ("a//b", "/a", "a/" are refused): MQTT allows them, but a topic built from
//   an empty placeholder ("site/{zone}/..." with no zone) is a mistake, not a topic.
// - A topic to publish to has no wildcard and does not start with '$' (reserved for brokers'
//   own topics, such as $SYS).
// - In a filter, '+' is a whole level and matches any one level; '#' is the whole last level and
//   matches the level before it and any number after ("a/#" matches "a" and "a/b/c"). A filter
//   starting with a wildcard matches no topic starting with '$'.
//
// Pure: no I/O, no state. Thread safety: every function may be called from any thread.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace hivemesh::bus {

inline constexpr size_t kMaxTopicBytes = 512;
inline constexpr size_t kMaxTopicLevels = 32;

// OK, or INVALID_ARGUMENT naming the rule the topic breaks (the topic quoted, shortened).
absl::Status CheckTopic(std::string_view topic);
absl::Status CheckFilter(std::string_view filter);

// Whether `filter` matches `topic`. REQUIRES: CheckFilter(filter) and CheckTopic(topic) are OK
// (a topic starting with '$' is matched too: brokers' topics may reach a filter that names them).
bool Matches(std::string_view filter, std::string_view topic);

}  // namespace hivemesh::bus
