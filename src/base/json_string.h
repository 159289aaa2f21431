// AppendJsonString: the project's one JSON string escaper, for every JSON the node writes (API
// answers, error bodies, JSON log lines).
//
// Appends `s` as a JSON string literal, quotes included. '"', '\\', \n, \r and \t get their short
// escapes, other control characters \u00XX. Valid UTF-8 is copied as it is. A byte that is not
// part of valid UTF-8 is written as \u00XX, the code point of the same number: the output is
// always valid JSON, and nothing is lost (a client reads each such byte back as one character
// U+0000..U+00FF, as Latin-1 would).
#pragma once

#include <string>
#include <string_view>

namespace hivemesh {

void AppendJsonString(std::string& out, std::string_view s);

// True if `s` is well-formed UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace hivemesh
