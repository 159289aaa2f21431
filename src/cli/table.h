// Plain-text tables and the small formatters the commands share. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hivemesh::cli {

using Row = std::vector<std::string>;

// Formats `rows` (the first is the header) as aligned columns two spaces apart, one line per row,
// each ending in '\n', without trailing spaces. Columns whose index is in `right_aligned` are
// aligned right (numbers). Rows shorter than the header are padded with empty cells.
std::string FormatTable(const std::vector<Row>& rows,
                        const std::vector<size_t>& right_aligned = {});

// `s` cut to at most `max` characters, ending in "..." when cut. REQUIRES: max >= 3.
std::string Abbreviate(std::string_view s, size_t max);

// `items` joined by `separator`; with more than `max_items`, the first max_items - 1 items,
// "...", the last one and " (<n> values)". REQUIRES: max_items >= 2.
std::string JoinAbbreviated(const std::vector<std::string>& items, size_t max_items,
                            std::string_view separator = ", ");

// A duration in microseconds for people: "850 us", "12.3 ms", "2.50 s".
std::string FormatMicros(double us);

// A rate with at most one decimal: "0", "2.5", "1234"; "-" when unknown.
std::string FormatRate(std::optional<double> per_second);

}  // namespace hivemesh::cli
