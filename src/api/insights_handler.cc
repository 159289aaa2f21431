#include "api/insights_handler.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/member_check.h"
#include "api/rest_infer.h"
#include "base/json_string.h"
#include "base/strings.h"
#include "bus/local_bus.h"
#include "bus/mesh_delivery.h"

namespace hivemesh {
namespace {

constexpr std::string_view kPrefix = "/v1/insights";
constexpr size_t kStreamQueueBytes = 256 * 1024;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `s` with each %XX decoded; nullopt if a '%' is not followed by two hex digits.
std::optional<std::string> PercentDecoded(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

HttpResponse BadRequest(std::string_view message) {
  return ErrorResponse(absl::InvalidArgumentError(std::string(message)));
}

}  // namespace

InsightsHandler::InsightsHandler(std::shared_ptr<bus::LocalBus> bus,
                                 std::function<int64_t()> wall_ms)
    : bus_(std::move(bus)), wall_ms_(std::move(wall_ms)) {}

bool InsightsHandler::Handle(const HttpRequest& request, HttpResponder& respond) const {
  std::string_view path = request.target();
  path = path.substr(0, path.find('?'));
  if (path == bus::kDeliverPath) {
    if (request.method() != "POST") {
      respond(MethodNotAllowed(request.method(), path, "POST"));
    } else {
      Receive(request, respond);
    }
    return true;
  }
  if (!path.starts_with(kPrefix)) return false;
  std::string_view rest = path.substr(kPrefix.size());
  if (!rest.empty() && rest[0] != '/') return false;  // /v1/insightsXYZ is not ours
  if (rest == "/stream") {
    if (request.method() != "GET") {
      respond(MethodNotAllowed(request.method(), path, "GET"));
      return true;
    }
    Stream(request, respond);
    return true;
  }
  if (rest.size() <= 1) {
    respond(
        BadRequest("publish with POST /v1/insights/<topic>, subscribe with GET "
                   "/v1/insights/stream?topic=<filter>"));
    return true;
  }
  if (request.method() != "POST") {
    respond(MethodNotAllowed(request.method(), path, "POST"));
    return true;
  }
  Publish(request, rest.substr(1), respond);
  return true;
}

void InsightsHandler::Receive(const HttpRequest& request, HttpResponder& respond) const {
  const std::string_view member = MemberOf(request);
  if (member.empty()) {
    respond(ErrorResponse(absl::PermissionDeniedError(
        "insights are delivered by members of the mesh only (over a mesh link or with a "
        "member's certificate)")));
    return;
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<std::vector<bus::Insight>> batch =
      bus::DecodeBatch(body != nullptr ? std::string_view(*body) : std::string_view(), member);
  if (!batch.ok()) {
    HttpResponse refused =
        ErrorResponse(absl::InvalidArgumentError(std::string(MessageOf(batch.status()))));
    if (absl::IsOutOfRange(batch.status())) refused.status = 413;
    respond(std::move(refused));
    return;
  }
  size_t took = 0;
  for (const bus::Insight& in : *batch) took += bus_->Deliver(in);
  respond(JsonResponse(200, StrCat("{\"insights\":", batch->size(), ",\"delivered\":", took, "}")));
}

void InsightsHandler::Publish(const HttpRequest& request, std::string_view topic,
                              HttpResponder& respond) const {
  std::optional<std::string> decoded = PercentDecoded(topic);
  if (!decoded) {
    respond(BadRequest("the topic in the path has a '%' that is not followed by two hex digits"));
    return;
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<bus::Insight> in =
      bus_->Publish(*std::move(decoded), body ? *body : std::string(), wall_ms_());
  if (!in.ok()) {
    respond(ErrorResponse(in.status()));
    return;
  }
  std::string out = "{\"id\":";
  AppendJsonString(out, in->id);
  out += ",\"topic\":";
  AppendJsonString(out, in->topic);
  StrAppend(&out, ",\"seq\":", in->seq, "}");
  respond(JsonResponse(202, std::move(out)));
}

void InsightsHandler::Stream(const HttpRequest& request, HttpResponder& respond) const {
  std::string_view query = request.target();
  const size_t q = query.find('?');
  query = q == std::string_view::npos ? std::string_view() : query.substr(q + 1);
  std::vector<std::string> filters;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (!pair.starts_with("topic=")) continue;
    std::optional<std::string> f = PercentDecoded(pair.substr(6));
    if (!f) {
      respond(BadRequest("a topic filter has a '%' that is not followed by two hex digits"));
      return;
    }
    filters.push_back(*std::move(f));
    if (filters.size() > bus::kMaxFiltersPerSubscriber) break;  // Subscribe says why
  }
  auto stream = std::make_shared<AnswerStream>(kStreamQueueBytes);
  std::weak_ptr<AnswerStream> weak = stream;
  std::string listed;
  for (const std::string& f : filters) listed += (listed.empty() ? "" : " ") + f;
  absl::StatusOr<uint64_t> id = bus_->Subscribe(
      std::move(filters), [weak](const bus::Insight& in, const std::string& document) {
        std::shared_ptr<AnswerStream> s = weak.lock();
        if (s == nullptr) return false;
        return s->Push(StrCat("id: ", in.id, "\nevent: insight\ndata: ", document, "\n\n"));
      });
  if (!id.ok()) {
    respond(ErrorResponse(id.status()));
    return;
  }
  std::weak_ptr<bus::LocalBus> weak_bus = bus_;
  stream->SetOnClose([weak_bus, id = *id] {
    if (std::shared_ptr<bus::LocalBus> b = weak_bus.lock()) b->Unsubscribe(id);
  });
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-store");
  // The filters are the client's own bytes: a comment line may not hold a line break.
  for (char& c : listed) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  r.body = StrCat(": subscribed to ", listed, "\n\n");
  r.stream = std::move(stream);
  respond(std::move(r));
}

}  // namespace hivemesh
