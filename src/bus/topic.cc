#include "bus/topic.h"

#include <string>

#include "base/json_string.h"
#include "base/strings.h"

namespace hivemesh::bus {
namespace {

// The topic as an error message quotes it: its first 64 bytes, escaped.
std::string Quoted(std::string_view s) {
  std::string out;
  AppendJsonString(out, s.substr(0, 64));
  if (s.size() > 64) out.insert(out.size() - 1, "...");
  return out;
}

// The checks a topic and a filter share; `what` is "topic" or "topic filter".
absl::Status CheckCommon(std::string_view s, std::string_view what) {
  if (s.empty()) return absl::InvalidArgumentError(StrCat("a ", what, " may not be empty"));
  if (s.size() > kMaxTopicBytes) {
    return absl::InvalidArgumentError(
        StrCat("a ", what, " is at most ", kMaxTopicBytes, " bytes; this one has ", s.size()));
  }
  if (!IsValidUtf8(s)) {
    return absl::InvalidArgumentError(StrCat("the ", what, " ", Quoted(s), " is not UTF-8"));
  }
  size_t levels = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    // U+0080..U+009F are C2 80..C2 9F in UTF-8.
    const bool c1 = c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xa0;
    if (c < 0x20 || c == 0x7f || c1) {
      return absl::InvalidArgumentError(
          StrCat("the ", what, " ", Quoted(s), " holds a control character"));
    }
    if (c == '/') ++levels;
  }
  if (levels > kMaxTopicLevels) {
    return absl::InvalidArgumentError(StrCat("a ", what, " has at most ", kMaxTopicLevels,
                                             " levels; ", Quoted(s), " has ", levels));
  }
  if (s.front() == '/' || s.back() == '/' || s.find("//") != std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat(
        "the ", what, " ", Quoted(s), " has an empty level (between two '/', or at an end)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTopic(std::string_view topic) {
  if (absl::Status s = CheckCommon(topic, "topic"); !s.ok()) return s;
  if (topic.find_first_of("+#") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("the topic ", Quoted(topic),
               " holds a wildcard ('+' or '#'): only a subscription's filter may"));
  }
  if (topic.front() == '$') {
    return absl::InvalidArgumentError(
        StrCat("the topic ", Quoted(topic), " starts with '$', which brokers keep for their own"));
  }
  return absl::OkStatus();
}

absl::Status CheckFilter(std::string_view filter) {
  if (absl::Status s = CheckCommon(filter, "topic filter"); !s.ok()) return s;
  for (size_t begin = 0; begin <= filter.size();) {
    size_t end = filter.find('/', begin);
    if (end == std::string_view::npos) end = filter.size();
    const std::string_view level = filter.substr(begin, end - begin);
    if (level.find('#') != std::string_view::npos && (level != "#" || end != filter.size())) {
      return absl::InvalidArgumentError(
          StrCat("in the topic filter ", Quoted(filter),
                 ", '#' must be the whole last level (\"a/#\", not \"a/#/b\" or \"a#\")"));
    }
    if (level.find('+') != std::string_view::npos && level != "+") {
      return absl::InvalidArgumentError(
          StrCat("in the topic filter ", Quoted(filter),
                 ", '+' must be a whole level (\"a/+/c\", not \"a/b+/c\")"));
    }
    begin = end + 1;
  }
  return absl::OkStatus();
}

bool Matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#')) {
    return false;
  }
  size_t f = 0, t = 0;
  for (;;) {
    size_t f_end = filter.find('/', f);
    if (f_end == std::string_view::npos) f_end = filter.size();
    const std::string_view level = filter.substr(f, f_end - f);
    if (level == "#") return true;  // this level and whatever follows, or none
    size_t t_end = topic.find('/', t);
    if (t_end == std::string_view::npos) t_end = topic.size();
    if (level != "+" && level != topic.substr(t, t_end - t)) return false;
    const bool filter_done = f_end == filter.size(), topic_done = t_end == topic.size();
    if (filter_done || topic_done) {
      if (filter_done && topic_done) return true;
      // The filter goes on past the topic's last level: only "/#" may follow.
      return topic_done && filter.substr(f_end) == "/#";
    }
    f = f_end + 1;
    t = t_end + 1;
  }
}

}  // namespace hivemesh::bus
