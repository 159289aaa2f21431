#include "api/objects_handler.h"

#include <chrono>

#include "api/member_check.h"
#include "api/rest_infer.h"
#include "base/rejections.h"
#include "base/strings.h"
#include "codec/json_writer.h"
#include "services/object_service.h"

namespace hivemesh {
namespace {

constexpr std::string_view kObjects = "/v1/objects";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void WriteVersion(JsonWriter& w, const services::Version& v) {
  w.BeginObject();
  w.Key("ms").Int(v.unix_ms);
  w.Key("counter").Uint(v.counter);
  w.Key("origin").String(v.origin);
  w.EndObject();
}

void WriteLabels(JsonWriter& w, const services::Labels& labels) {
  w.BeginObject();
  for (const auto& [k, v] : labels) w.Key(k).String(v);
  w.EndObject();
}

// What `get` shows of an object without reading its manifest: a Service's selector and ports, a
// Deployment's replicas, labels and what it runs.
void WriteSummary(JsonWriter& w, const services::StoredObject& o) {
  w.BeginObject();
  absl::StatusOr<services::Parsed> parsed = services::ParseManifests(o.text);
  if (parsed.ok() && parsed->manifests.size() == 1) {
    const services::Manifest& m = parsed->manifests[0];
    if (m.kind == services::Kind::kService) {
      w.Key("selector");
      WriteLabels(w, m.service.selector);
      w.Key("ports").BeginArray();
      for (const services::ServicePort& p : m.service.ports) {
        w.BeginObject();
        w.Key("port").Uint(p.port);
        w.Key("targetPort").String(p.target_port.empty() ? std::to_string(p.port) : p.target_port);
        w.EndObject();
      }
      w.EndArray();
    } else {
      w.Key("replicas").Int(m.workload.replicas);
      w.Key("labels");
      WriteLabels(w, m.workload.template_labels);
      if (!m.workload.image.empty()) w.Key("image").String(m.workload.image);
      if (!m.workload.command.empty()) {
        std::string command;
        for (const std::string& part : m.workload.command)
          StrAppend(&command, command.empty() ? "" : " ", part);
        for (const std::string& part : m.workload.args) StrAppend(&command, " ", part);
        w.Key("command").String(command);
      }
    }
    if (!m.annotations.empty()) {
      w.Key("annotations");
      WriteLabels(w, m.annotations);
    }
  }
  w.EndObject();
}

void WriteObject(JsonWriter& w, const services::StoredObject& o, bool with_text,
                 std::string_view port_here = {}) {
  w.BeginObject();
  w.Key("kind").String(services::KindName(o.kind));
  w.Key("name").String(o.name);
  w.Key("version");
  WriteVersion(w, o.version);
  if (o.deleted) w.Key("deleted").Bool(true);
  if (with_text) {
    w.Key("summary");
    WriteSummary(w, o);
    if (!port_here.empty()) w.Key("port_here").String(port_here);
    w.Key("text").String(o.text);
  }
  w.EndObject();
}

}  // namespace

ObjectsHandler::ObjectsHandler(std::shared_ptr<services::ObjectService> objects, AdminAccess admin,
                               std::shared_ptr<Rejections> rejections)
    : objects_(std::move(objects)), admin_(admin), rejections_(std::move(rejections)) {}

absl::Status ObjectsHandler::AdminAllowed(const HttpRequest& request) const {
  const AdminCaller caller{request.remote_address(), request.header("Authorization"),
                           request.tls_peer()};
  absl::Status allowed = admin_.Check(caller);
  if (!allowed.ok() && rejections_ != nullptr) {
    rejections_->Note(Rejection::kAdminDenied, caller.address,
                      StrCat(request.method(), " ", request.target().substr(0, 64)));
  }
  return allowed;
}

bool ObjectsHandler::Handle(const HttpRequest& request, HttpResponder& respond) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  if (path == "/v1/endpoints") {
    if (request.method() != "GET") {
      respond(MethodNotAllowed(request.method(), path, "GET"));
    } else if (absl::Status allowed = MemberOrAdmin(request); !allowed.ok()) {
      respond(ErrorResponse(allowed));
    } else {
      respond(JsonResponse(200, endpoints_ ? endpoints_() : R"({"endpoints":[]})"));
    }
    return true;
  }
  if (path != kObjects && !path.starts_with(StrCat(kObjects, "/"))) return false;
  const std::string_view rest = path.substr(kObjects.size());
  const std::string_view method = request.method();
  if (rest.empty() || rest == "/") {
    if (method == "POST") {
      Apply(request, respond, /*remove=*/false);
    } else if (method == "GET") {
      List(request, respond);
    } else {
      respond(MethodNotAllowed(method, path, "GET, POST"));
    }
  } else if (rest == "/index") {
    if (method != "GET") {
      respond(MethodNotAllowed(method, path, "GET"));
    } else {
      Index(request, respond);
    }
  } else if (rest == "/pull") {
    if (method != "POST") {
      respond(MethodNotAllowed(method, path, "POST"));
    } else {
      Pull(request, respond);
    }
  } else if (rest == "/delete") {
    if (method != "POST") {
      respond(MethodNotAllowed(method, path, "POST"));
    } else {
      Apply(request, respond, /*remove=*/true);
    }
  } else if (method == "DELETE") {
    DeleteOne(request, respond, rest.substr(1));
  } else {
    respond(MethodNotAllowed(method, path, "DELETE"));
  }
  return true;
}

void ObjectsHandler::Apply(const HttpRequest& request, HttpResponder& respond, bool remove) const {
  if (absl::Status allowed = AdminAllowed(request); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  const std::shared_ptr<const std::string> body = request.body();
  const std::string_view yaml = body ? std::string_view(*body) : std::string_view();
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  if (remove) {
    absl::StatusOr<std::vector<services::StoredObject>> deleted =
        objects_->DeleteManifests(yaml, NowMs());
    if (!deleted.ok()) return respond(ErrorResponse(deleted.status()));
    w.Key("deleted").BeginArray();
    for (const services::StoredObject& o : *deleted) WriteObject(w, o, false);
    w.EndArray();
  } else {
    absl::StatusOr<services::ObjectService::Applied> applied = objects_->Apply(yaml, NowMs());
    if (!applied.ok()) return respond(ErrorResponse(applied.status()));
    w.Key("applied").BeginArray();
    for (const services::StoredObject& o : applied->objects) WriteObject(w, o, false);
    w.EndArray();
    w.Key("warnings").BeginArray();
    for (const std::string& warning : applied->warnings) w.String(warning);
    w.EndArray();
  }
  w.EndObject();
  respond(JsonResponse(200, std::move(out)));
}

absl::Status ObjectsHandler::MemberOrAdmin(const HttpRequest& request) const {
  return MemberOf(request).empty() ? AdminAllowed(request) : absl::OkStatus();
}

void ObjectsHandler::Index(const HttpRequest& request, HttpResponder& respond) const {
  if (absl::Status allowed = MemberOrAdmin(request); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  HttpResponse r;
  r.content_type = "text/plain";
  r.body = services::EncodeIndex(objects_->Index());
  respond(std::move(r));
}

void ObjectsHandler::Pull(const HttpRequest& request, HttpResponder& respond) const {
  if (absl::Status allowed = MemberOrAdmin(request); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<std::vector<services::ObjectKey>> keys =
      services::DecodeKeys(body ? std::string_view(*body) : std::string_view());
  if (!keys.ok()) {
    return respond(ErrorResponse(
        absl::InvalidArgumentError(StrCat("the keys asked for: ", MessageOf(keys.status())))));
  }
  HttpResponse r;
  r.content_type = "application/x-ndjson";
  r.body = services::EncodeObjects(objects_->Export(*keys));
  respond(std::move(r));
}

void ObjectsHandler::List(const HttpRequest& request, HttpResponder& respond) const {
  if (absl::Status allowed = MemberOrAdmin(request); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  std::optional<services::Kind> only;
  const std::string_view target = request.target();
  if (const size_t q = target.find("?kind="); q != std::string_view::npos) {
    only = services::ParseKind(target.substr(q + 6));
    if (!only) {
      return respond(ErrorResponse(absl::InvalidArgumentError(
          StrCat("kind: '", target.substr(q + 6, 64), "' is not Service or Deployment"))));
    }
  }
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("objects").BeginArray();
  for (const services::StoredObject& o : objects_->Live()) {
    if (only && o.kind != *only) continue;
    WriteObject(w, o, true,
                o.kind == services::Kind::kService && port_status_ ? port_status_(o.name) : "");
  }
  w.EndArray().EndObject();
  respond(JsonResponse(200, std::move(out)));
}

void ObjectsHandler::DeleteOne(const HttpRequest& request, HttpResponder& respond,
                               std::string_view rest) const {
  if (absl::Status allowed = AdminAllowed(request); !allowed.ok()) {
    return respond(ErrorResponse(allowed));
  }
  const size_t slash = rest.find('/');
  const std::optional<services::Kind> kind =
      slash == std::string_view::npos ? std::nullopt : services::ParseKind(rest.substr(0, slash));
  if (!kind) {
    return respond(ErrorResponse(absl::NotFoundError(
        StrCat("DELETE ", kObjects, "/<kind>/<name>: kind Service or Deployment"))));
  }
  absl::StatusOr<services::StoredObject> deleted =
      objects_->Delete(*kind, rest.substr(slash + 1), NowMs());
  if (!deleted.ok()) return respond(ErrorResponse(deleted.status()));
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("deleted");
  WriteObject(w, *deleted, false);
  w.EndObject();
  respond(JsonResponse(200, std::move(out)));
}

}  // namespace hivemesh
