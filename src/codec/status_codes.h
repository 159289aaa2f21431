// How an absl::Status travels in each protocol the node speaks: one table maps status codes to
// HTTP statuses (REST answers, and the answers peers give over mesh links), and back (a peer's
// HTTP error read as a Status). gRPC's codes are absl's codes (the same numbers, by design), so a
// Status goes into a gRPC answer as it is.
//
//   INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE 400   PERMISSION_DENIED 403
//   NOT_FOUND 404   RESOURCE_EXHAUSTED, UNAVAILABLE 503   DEADLINE_EXCEEDED 504
//   UNIMPLEMENTED 501   OK 200   anything else 500
//
// Back from HTTP (an error a peer answered), each status reads as the first code of its row (400
// INVALID_ARGUMENT, 503 UNAVAILABLE, ...), and a status not in the table as INTERNAL. 200 is no
// error, so it too reads as INTERNAL: a Status made from the result is never OK.
#pragma once

#include "absl/status/status.h"

namespace hivemesh {

int HttpStatusFor(absl::StatusCode code);
inline int HttpStatusFor(const absl::Status& status) { return HttpStatusFor(status.code()); }

absl::StatusCode StatusCodeForHttp(int http_status);

}  // namespace hivemesh
