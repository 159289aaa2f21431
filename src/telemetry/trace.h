// Trace context: the id that follows one inference through the mesh. A node takes the trace id a
// request brings (the trace-id of a W3C `traceparent` header, else a `Hivemesh-Trace` header) or
// makes one, passes it on when it forwards the request, returns it in the response's
// `Hivemesh-Trace` header and writes it in its request log line, so that one id finds the
// request in every node's log.
//
// Thread safety: pure functions; NewTraceId() uses a random source per thread.
#pragma once

#include <string>
#include <string_view>

namespace hivemesh::telemetry {

// The W3C Trace Context request header.
inline constexpr std::string_view kTraceparentHeader = "traceparent";

// The trace-id of a W3C Trace Context `traceparent` value
// ("<version>-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>"), or empty if the value is not
// a valid one (wrong length or case, version ff, an all-zero id).
std::string TraceIdFromTraceparent(std::string_view traceparent);

// True if `id` may be taken as a trace id from a client or a peer: 1 to 128 visible ASCII
// characters other than `"` and `\`. It is written into headers and logs as it is.
bool IsAcceptableTraceId(std::string_view id);

// A new random trace id: 32 lowercase hex digits, not all zero (a valid W3C trace-id).
std::string NewTraceId();

// The trace id of a request: `traceparent`'s trace-id if valid, else `trace_header` if
// acceptable, else a new one. Empty arguments stand for absent headers.
std::string TraceIdFor(std::string_view traceparent, std::string_view trace_header);

}  // namespace hivemesh::telemetry
