#include "cli/table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "base/strings.h"

namespace hivemesh::cli {

std::string FormatTable(const std::vector<Row>& rows, const std::vector<size_t>& right_aligned) {
  if (rows.empty()) return "";
  size_t columns = 0;
  for (const Row& r : rows) columns = std::max(columns, r.size());
  std::vector<size_t> width(columns, 0);
  for (const Row& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto right = [&](size_t i) {
    return std::find(right_aligned.begin(), right_aligned.end(), i) != right_aligned.end();
  };
  std::string out;
  for (const Row& r : rows) {
    std::string line;
    for (size_t i = 0; i < columns; ++i) {
      const std::string empty;
      const std::string& cell = i < r.size() ? r[i] : empty;
      const std::string pad(width[i] - cell.size(), ' ');
      if (i > 0) line += "  ";
      if (right(i)) {
        StrAppend(&line, pad, cell);
      } else {
        StrAppend(&line, cell, pad);
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    StrAppend(&out, line, "\n");
  }
  return out;
}

std::string Abbreviate(std::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  return StrCat(s.substr(0, max - 3), "...");
}

std::string JoinAbbreviated(const std::vector<std::string>& items, size_t max_items,
                            std::string_view separator) {
  std::string out;
  const bool cut = items.size() > max_items;
  const size_t head = cut ? max_items - 1 : items.size();
  for (size_t i = 0; i < head; ++i) StrAppend(&out, i > 0 ? separator : "", items[i]);
  if (cut)
    StrAppend(&out, separator, "...", separator, items.back(), " (", items.size(), " values)");
  return out;
}

std::string FormatMicros(double us) {
  char buf[32];
  if (us < 1000) {
    std::snprintf(buf, sizeof buf, "%.0f us", us);
  } else if (us < 1e6) {
    std::snprintf(buf, sizeof buf, us < 1e4 ? "%.2f ms" : "%.1f ms", us / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", us / 1e6);
  }
  return buf;
}

std::string FormatRate(std::optional<double> per_second) {
  if (!per_second) return "-";
  char buf[32];
  const double r = *per_second;
  if (r >= 100 || std::abs(r - std::round(r)) < 0.05) {
    std::snprintf(buf, sizeof buf, "%.0f", r);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f", r);
  }
  return buf;
}

}  // namespace hivemesh::cli
