// The join tokens of an issuer node (docs/identity.md), over REST. Every call is an admin call
// (admin_access.h):
//
//   POST   /v1/mesh/tokens       {"role": "node", "ttl": "24h", "uses": 0}  -> 201
//          {"token": "HM1-...", "id", "role", "expires" (unix s), "uses"}
//   GET    /v1/mesh/tokens       -> {"tokens": [{"id", "role", "created", "expires", "uses",
//                                    "used", "revoked", "created_by"}]}  (never a secret)
//   DELETE /v1/mesh/tokens/<id>  -> {} or 404
//
// A node without issuer rights answers 409, saying so.
//
// Thread safety: Handle may be called from any thread.
#pragma once

#include <memory>

#include "api/admin_access.h"
#include "base/rejections.h"
#include "transport/http_server.h"

namespace hivemesh {
namespace identity {
class IssuerService;
}

class TokenHandler {
 public:
  // `issuer` null: the node holds no issuer rights.
  TokenHandler(std::shared_ptr<identity::IssuerService> issuer, AdminAccess admin,
               std::shared_ptr<Rejections> rejections);
  // True if the request was for /v1/mesh/tokens (and was answered).
  bool Handle(const HttpRequest& request, HttpResponder& respond) const;

 private:
  std::shared_ptr<identity::IssuerService> issuer_;
  AdminAccess admin_;
  std::shared_ptr<Rejections> rejections_;
};

}  // namespace hivemesh
