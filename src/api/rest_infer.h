// The REST front end of an inference (POST /v2/models/<m>[/versions/<v>]/infer, and the same
// request forwarded by a peer over a mesh link): it reads the HTTP request, hands it to the node's
// routing::Dispatcher, and writes the answer. Everything between (served here or by a peer) is
// the dispatcher's.
//
//  - In: a KServe v2 body (JSON, JSON + binary data, or raw with Inference-Header-Content-Length:
//    0), or the mesh tensor form a peer forwards in (codec/mesh_tensors.h); the deadline is the
//    smaller of the body's `timeout` parameter and the Inference-Timeout-Ms header. A raw body
//    for a model this node does not serve goes to a peer as it came.
//  - A request a peer forwarded (Hivemesh-Hops) must come from a member: on its link, or with a
//    member credential (api/member_check.h).
//  - Out: the answer in the form the request came in (api/infer_answer.h), within the memory
//    budget, with the trace id (Hivemesh-Trace) for a client, and, for a peer, this node's load
//    (Hivemesh-Load).
//  - Every answer is finished on the dispatcher (metrics, log line) with its HTTP status.
//
// Thread safety: ServeRestInfer may be called from any I/O thread at once.
#pragma once

#include <string>

#include "transport/http_server.h"

namespace hivemesh {

class MemberCheck;
class MemoryBudget;
class Rejections;
namespace routing {
class Dispatcher;
}

// What a REST inference needs of the node. Every pointer outlives the requests it serves.
struct RestInferNode {
  routing::Dispatcher* dispatcher = nullptr;
  const MemberCheck* member_check = nullptr;  // null: forwarded requests are refused
  MemoryBudget* memory_budget = nullptr;      // null: nothing is reserved
  Rejections* rejections = nullptr;           // refusals are counted here
};

// Serves one inference request for `model` at `version` (names already checked: codec/rest_path.h).
// `respond` is called exactly once.
void ServeRestInfer(const RestInferNode& node, const HttpRequest& request, const std::string& model,
                    const std::string& version, HttpResponder respond);

// An error as a REST answer: {"error": "..."} with the status codec/status_codes.h maps it to,
// and Retry-After: 1 when the node is out of room for now (RESOURCE_EXHAUSTED) or no node can
// take the request for now (UNAVAILABLE: draining, shutting down, the mesh's view settling).
HttpResponse ErrorResponse(const absl::Status& status);
// A JSON answer.
HttpResponse JsonResponse(int status, std::string body);
// 405 for `method` on `path`, with Allow: `allowed`.
HttpResponse MethodNotAllowed(std::string_view method, std::string_view path,
                              std::string_view allowed);

}  // namespace hivemesh
