// Showing an infer response as a table: one row per output with its name, datatype, shape and
// values (long values abbreviated), then which node served it and how long it took. Pure.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tensor/inference.h"

namespace hivemesh::cli {

// Decodes a response body (JSON, or JSON + binary outputs when `header_length` is set). INTERNAL
// if it cannot be read (the node's answer, not the user's input, is at fault).
absl::StatusOr<InferResponse> ReadInferResponse(std::string body,
                                                std::optional<uint64_t> header_length);

// The values of `tensor`, comma-separated. Tensors of rank >= 2 whose last dimension is 2 to 16
// are shown as groups ("[1, 2], [3, 4]"). More than `max_items` values (or groups) are abbreviated
// to the first ones, "...", the last one and the count; BYTES elements are quoted, with
// non-printable bytes as \xNN, and cut to 40 characters.
std::string FormatTensorValues(const Tensor& tensor, size_t max_items = 8);

// The table of outputs and the line "served by <node> in <latency> (model <m>, version <v>)".
// `served_by` is the Hivemesh-Served-By header (falls back to the response's parameter).
std::string FormatInferResult(const InferResponse& response, std::string_view served_by,
                              std::chrono::microseconds latency);

}  // namespace hivemesh::cli
