#include "transport/link_head.h"

#include <array>
#include <cstring>

#include "base/strings.h"

namespace hivemesh {
namespace {

constexpr std::string_view kVersion = "HTTP/1.1";

// Characters of a token (field names, methods), as a table: a head is read a byte at a time.
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<size_t>(c)] = true;
  for (int c = '0'; c <= '9'; ++c) t[static_cast<size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  bool ok = true;
  for (unsigned char c : s) ok &= kTokenChars[c];
  return ok;
}

// Field values and reason phrases: visible characters, spaces, tabs and obs-text; no control
// characters (a lone CR included).
bool IsText(std::string_view s) {
  unsigned bad = 0;  // no early exit: the loop vectorizes
  for (unsigned char c : s) bad |= (unsigned{c < 0x20} & unsigned{c != '\t'}) | unsigned{c == 0x7f};
  return bad == 0;
}

bool IsDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool Fail(std::string* error, std::string_view why) {
  if (error != nullptr) error->assign(why);
  return false;
}

bool ParseStartLine(std::string_view line, bool request, LinkHead* head, std::string* error) {
  if (request) {
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return Fail(error, "malformed request line");
    head->method = line.substr(0, sp1);
    head->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (!IsToken(head->method)) return Fail(error, "malformed method");
    if (head->target.empty() || !IsText(head->target) ||
        head->target.find_first_of(" \t") != std::string_view::npos) {
      return Fail(error, "malformed request target");
    }
    if (line.substr(sp2 + 1) != kVersion) return Fail(error, "not HTTP/1.1");
    return true;
  }
  if (line.size() < kVersion.size() + 4 || line.substr(0, kVersion.size()) != kVersion ||
      line[kVersion.size()] != ' ') {
    return Fail(error, "malformed status line");
  }
  const std::string_view code = line.substr(kVersion.size() + 1, 3);
  if (!IsDigits(code)) return Fail(error, "malformed status code");
  const std::string_view rest = line.substr(kVersion.size() + 4);
  if (!rest.empty() && (rest.front() != ' ' || !IsText(rest))) {
    return Fail(error, "malformed reason phrase");
  }
  head->status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  return true;
}

bool ParseField(std::string_view line, LinkHead* head, bool* has_length, std::string* error) {
  // The name: token characters up to the colon. The line is followed by its CR, which is no
  // token character, so the scan stops inside the buffer without a bounds check.
  size_t colon = 0;
  while (kTokenChars[static_cast<unsigned char>(line.data()[colon])]) ++colon;
  if (colon == 0 || colon == line.size() || line[colon] != ':') {
    return Fail(error, "malformed header name");
  }
  const std::string_view name = line.substr(0, colon);
  const std::string_view value = TrimSpaces(line.substr(colon + 1));
  if (!IsText(value)) return Fail(error, "a control character in a header value");
  if (name.size() == 17 && EqualsLowerCase(name, "transfer-encoding")) {
    return Fail(error, "Transfer-Encoding on a mesh link (messages carry Content-Length)");
  }
  if (name.size() == 14 && EqualsLowerCase(name, "content-length")) {
    // Nineteen digits always fit in 64 bits.
    if (!IsDigits(value) || value.size() > 19) return Fail(error, "malformed Content-Length");
    uint64_t n = 0;
    for (char c : value) n = n * 10 + static_cast<uint64_t>(c - '0');
    if (*has_length && n != head->content_length) return Fail(error, "conflicting Content-Length");
    head->content_length = n;
    *has_length = true;
  }
  head->fields.push_back({name, value});
  return true;
}

}  // namespace

LinkParse ParseLinkHead(std::string_view bytes, bool request, size_t max_head, LinkHead* head,
                        std::string* error) {
  head->method = head->target = {};
  head->status = 0;
  head->fields.clear();
  head->content_length = 0;
  head->head_size = 0;
  const std::string_view window = bytes.substr(0, max_head);
  bool has_length = false;
  size_t pos = 0;
  for (bool first = true;; first = false) {
    const void* nl = std::memchr(window.data() + pos, '\n', window.size() - pos);
    if (nl == nullptr) {
      if (bytes.size() < max_head) return LinkParse::kNeedMore;
      if (error != nullptr) *error = StrCat("a message head over ", max_head, " bytes");
      return LinkParse::kBad;
    }
    const size_t eol = static_cast<size_t>(static_cast<const char*>(nl) - window.data());
    if (eol == pos || window[eol - 1] != '\r') {
      if (error != nullptr) *error = "a line that does not end in CRLF";
      return LinkParse::kBad;
    }
    const std::string_view line = window.substr(pos, eol - 1 - pos);
    pos = eol + 1;
    if (first) {
      if (!ParseStartLine(line, request, head, error)) return LinkParse::kBad;
      continue;
    }
    if (line.empty()) break;  // the blank line that ends the head
    if (line.front() == ' ' || line.front() == '\t') {
      if (error != nullptr) *error = "a folded header line";
      return LinkParse::kBad;
    }
    if (!ParseField(line, head, &has_length, error)) return LinkParse::kBad;
  }
  head->head_size = pos;
  return LinkParse::kDone;
}

}  // namespace hivemesh
