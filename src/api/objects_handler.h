// The applied objects over REST (docs/services.md): manifests applied, listed and deleted at any
// node. Applying and deleting are admin calls (admin_access.h: an operator certificate, the
// node's admin token, or a caller on the node itself); listing is for admins and members.
//
//   POST   /v1/objects         (body: YAML manifests, at most 1 MiB) -> 200 {"applied": [{"kind",
//          "name", "version"}], "warnings": [...]}: all the manifest's objects, or none (400
//          naming the document and the field)
//   POST   /v1/objects/delete  (body: YAML manifests) -> 200 {"deleted": [...]}: the objects
//          they name (404 naming the first that is not there; then none is deleted)
//   GET    /v1/objects[?kind=Service|Deployment] -> {"objects": [{"kind", "name", "version":
//          {"ms", "counter", "origin"}, "summary": {...}, "port_here", "text"}]}: `port_here`
//          (Services) says whether this node listens on the Service's port, or why not
//   DELETE /v1/objects/<kind>/<name> -> 200 {"deleted": {...}} or 404
//
// Anti-entropy between nodes (members over their links or certificates, and admins):
//   GET    /v1/objects/index  -> text/plain: services::EncodeIndex of every object, tombstones
//          too
//   POST   /v1/objects/pull   (body: services::EncodeKeys) -> services::EncodeObjects of those
//          this node holds
//
// Thread safety: Handle may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "api/admin_access.h"
#include "transport/http_server.h"

namespace hivemesh {
class Rejections;
namespace services {
class ObjectService;
}

class ObjectsHandler {
 public:
  ObjectsHandler(std::shared_ptr<services::ObjectService> objects, AdminAccess admin,
                 std::shared_ptr<Rejections> rejections);
  // What a Service's port is on this node ("listening on 127.0.0.1:80", or why not), given in
  // the list as `port_here`. Set before requests arrive.
  void SetPortStatus(std::function<std::string(std::string_view service)> status) {
    port_status_ = std::move(status);
  }
  // The body of GET /v1/endpoints (for admins and members): {"endpoints": [{"service", "node",
  // "port", "ready"}]}, every Service's endpoints as this node routes to them. Set before
  // requests arrive.
  void SetEndpoints(std::function<std::string()> endpoints) { endpoints_ = std::move(endpoints); }
  // True if the request was for /v1/objects or /v1/endpoints (and was answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond) const;

 private:
  absl::Status AdminAllowed(const HttpRequest& request) const;
  void Apply(const HttpRequest& request, HttpResponder& respond, bool remove) const;
  void List(const HttpRequest& request, HttpResponder& respond) const;
  void DeleteOne(const HttpRequest& request, HttpResponder& respond, std::string_view rest) const;
  // OK for a member or an admin.
  absl::Status MemberOrAdmin(const HttpRequest& request) const;
  void Index(const HttpRequest& request, HttpResponder& respond) const;
  void Pull(const HttpRequest& request, HttpResponder& respond) const;

  std::shared_ptr<services::ObjectService> objects_;
  AdminAccess admin_;
  std::shared_ptr<Rejections> rejections_;
  std::function<std::string(std::string_view)> port_status_;
  std::function<std::string()> endpoints_;
};

}  // namespace hivemesh
