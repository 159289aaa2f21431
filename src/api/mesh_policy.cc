#include "api/mesh_policy.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <chrono>
#include <utility>

#include "api/member_check.h"
#include "api/rest_infer.h"
#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "codec/json_writer.h"
#include "identity/issuer.h"
#include "identity/key_file.h"

namespace hivemesh {
namespace {

constexpr std::string_view kPolicyPath = "/v1/mesh/policy";

bool SignedByIssuer(const SignedPolicy& p, const std::vector<identity::Certificate>& issuers) {
  for (const identity::Certificate& issuer : issuers) {
    if (identity::VerifyPolicy(issuer, p.version, p.document, p.signature)) return true;
  }
  return false;
}

}  // namespace

std::string EncodeSignedPolicy(const SignedPolicy& policy) {
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("version").Uint(policy.version);
  w.Key("document").String(policy.document);
  w.Key("signature").String(HexEncode(policy.signature));
  if (!policy.signer.empty()) w.Key("signer").String(policy.signer);
  w.EndObject();
  return out;
}

absl::StatusOr<SignedPolicy> DecodeSignedPolicy(std::string_view json) {
  // The document, escaped, and its signature: a bound well above what a valid one takes.
  if (json.size() > 8 * kMaxPolicyBytes) {
    return absl::InvalidArgumentError("the signed policy is too large");
  }
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  uint64_t version = 0;
  std::string_view document, signature;
  if (parser.parse(json.data(), json.size()).get(o) != simdjson::SUCCESS ||
      o["version"].get(version) != simdjson::SUCCESS ||
      o["document"].get(document) != simdjson::SUCCESS ||
      o["signature"].get(signature) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(
        "a signed policy is {\"version\": N, \"document\": \"...\", \"signature\": \"<hex>\"}");
  }
  if (document.size() > kMaxPolicyBytes) {
    return absl::InvalidArgumentError("the policy document is too large");
  }
  std::optional<std::string> sig = HexDecode(signature);
  if (!sig) return absl::InvalidArgumentError("the policy's signature is not hex");
  std::string_view signer;
  if (simdjson::dom::element e; o["signer"].get(e) == simdjson::SUCCESS &&
                                (e.get(signer) != simdjson::SUCCESS || signer.size() > 16384)) {
    return absl::InvalidArgumentError("the policy's signer is not a certificate chain (PEM)");
  }
  return SignedPolicy{version, std::string(document), std::move(*sig), std::string(signer)};
}

MeshPolicy::MeshPolicy(std::string path, std::shared_ptr<PolicyHolder> holder)
    : path_(std::move(path)), holder_(std::move(holder)) {}

absl::Status MeshPolicy::Load(const std::vector<identity::Certificate>& issuers) {
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) return absl::OkStatus();  // none saved
  HM_ASSIGN_OR_RETURN(std::string text, identity::ReadSecretFile(path_, "mesh policy"));
  absl::StatusOr<SignedPolicy> saved = DecodeSignedPolicy(text);
  if (!saved.ok()) {
    return absl::FailedPreconditionError(StrCat(path_, ": ", MessageOf(saved.status())));
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<bool> taken = OfferLocked(*saved, issuers, /*saved=*/true);
  if (!taken.ok()) {
    return absl::FailedPreconditionError(
        StrCat(path_, ": ", MessageOf(taken.status()),
               "; the node does not start without the policy it enforced (remove the file to "
               "start with none until the mesh's policy reaches it)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> MeshPolicy::Offer(const SignedPolicy& offered,
                                       const std::vector<identity::Certificate>& issuers) {
  absl::MutexLock lock(&mu_);
  return OfferLocked(offered, issuers, /*saved=*/false);
}

absl::Status MeshPolicy::CheckSignature(const SignedPolicy& p,
                                        const std::vector<identity::Certificate>& issuers,
                                        bool saved) const {
  if (p.signer.empty()) {
    if (SignedByIssuer(p, issuers)) return absl::OkStatus();
    return absl::PermissionDeniedError(
        StrCat("policy version ", p.version, " is not signed by an issuer of the mesh"));
  }
  if (!operator_check_) {
    return absl::FailedPreconditionError("this node takes no policy an operator signed");
  }
  const int64_t at = saved ? static_cast<int64_t>(p.version / 1000)
                           : std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  absl::StatusOr<std::string> who =
      operator_check_(p.signer, identity::PolicyMessage(p.version, p.document), p.signature, at);
  if (!who.ok()) {
    return absl::PermissionDeniedError(
        StrCat("policy version ", p.version,
               " is not signed by an operator of the mesh: ", MessageOf(who.status())));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> MeshPolicy::OfferLocked(const SignedPolicy& offered,
                                             const std::vector<identity::Certificate>& issuers,
                                             bool saved) {
  if (offered.version <= current_.version) return false;
  HM_RETURN_IF_ERROR(CheckSignature(offered, issuers, saved));
  absl::StatusOr<Policy> parsed = Policy::Parse(offered.document, offered.version);
  if (!parsed.ok()) return parsed.status();
  HM_RETURN_IF_ERROR(identity::ReplaceFile(path_, EncodeSignedPolicy(offered), 0600));
  current_ = offered;
  holder_->Set(std::make_shared<const Policy>(*std::move(parsed)));
  return true;
}

absl::StatusOr<uint64_t> MeshPolicy::Apply(
    std::string_view document, const std::function<std::string(uint64_t, std::string_view)>& sign,
    const std::vector<identity::Certificate>& issuers) {
  HM_RETURN_IF_ERROR(Policy::Parse(document).status());
  absl::MutexLock lock(&mu_);
  SignedPolicy next{current_.version + 1, std::string(document), "", ""};
  next.signature = sign(next.version, next.document);
  absl::StatusOr<bool> taken = OfferLocked(next, issuers, /*saved=*/false);
  if (!taken.ok()) return taken.status();
  return next.version;
}

SignedPolicy MeshPolicy::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

uint64_t MeshPolicy::version() const {
  absl::MutexLock lock(&mu_);
  return current_.version;
}

PolicyHandler::PolicyHandler(
    std::shared_ptr<MeshPolicy> policy, AdminAccess admin, std::shared_ptr<Rejections> rejections,
    std::function<absl::StatusOr<uint64_t>(std::string_view document)> apply,
    std::function<void()> applied)
    : policy_(std::move(policy)),
      admin_(admin),
      rejections_(std::move(rejections)),
      apply_(std::move(apply)),
      applied_(std::move(applied)) {}

bool PolicyHandler::Handle(const HttpRequest& request, HttpResponder& respond) const {
  const std::string_view path = request.target().substr(0, request.target().find('?'));
  if (path != kPolicyPath) return false;
  const std::string_view method = request.method();
  if (method != "GET" && method != "PUT") {
    respond(MethodNotAllowed(method, path, "GET, PUT"));
    return true;
  }
  // A signed document (JSON) is its own authority: taken from anyone once its signature checks.
  const std::shared_ptr<const std::string> put = request.body();
  if (method == "PUT" && put != nullptr) {
    const size_t first = put->find_first_not_of(" \t\r\n");
    if (first != std::string::npos && (*put)[first] == '{') {
      OfferSigned(request, respond);
      return true;
    }
  }
  // Members read it over mutual TLS; everything else is an admin call.
  const bool member = !MemberOf(request).empty();
  if (method == "PUT" || !member) {
    const AdminCaller caller{request.remote_address(), request.header("Authorization"),
                             request.tls_peer()};
    if (absl::Status allowed = admin_.Check(caller); !allowed.ok()) {
      if (rejections_ != nullptr) {
        rejections_->Note(
            Rejection::kAdminDenied, caller.address,
            StrCat(method, " ", path, " (admin_access: ", AdminAccessModeName(admin_.mode()), ")"));
      }
      respond(ErrorResponse(allowed));
      return true;
    }
  }
  if (method == "GET") {
    respond(JsonResponse(200, EncodeSignedPolicy(policy_->current())));
    return true;
  }
  if (apply_ == nullptr) {
    respond(ErrorResponse(absl::FailedPreconditionError(
        "this node holds no issuer rights: apply the policy at the node that created the mesh")));
    return true;
  }
  const std::shared_ptr<const std::string> body = request.body();
  absl::StatusOr<uint64_t> version = apply_(body ? std::string_view(*body) : std::string_view());
  if (!version.ok()) {
    respond(ErrorResponse(version.status()));
    return true;
  }
  spdlog::info("mesh policy version {} applied by {}", *version,
               request.tls_peer().empty() ? StrCat("an admin at ", request.remote_address())
                                          : std::string(request.tls_peer()));
  if (applied_) applied_();
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("version").Uint(*version).EndObject();
  respond(JsonResponse(200, std::move(out)));
  return true;
}

void PolicyHandler::OfferSigned(const HttpRequest& request, HttpResponder& respond) const {
  absl::StatusOr<SignedPolicy> offered = DecodeSignedPolicy(*request.body());
  absl::StatusOr<bool> taken =
      !offered.ok() ? offered.status()
      : offer_      ? offer_(*offered)
                    : absl::FailedPreconditionError("this node takes no signed policy");
  if (!taken.ok()) {
    if (taken.status().code() == absl::StatusCode::kPermissionDenied && rejections_ != nullptr) {
      rejections_->Note(Rejection::kAdminDenied, request.remote_address(),
                        StrCat("PUT ", kPolicyPath, ": ", MessageOf(taken.status())));
    }
    return respond(ErrorResponse(taken.status()));
  }
  if (*taken) {
    spdlog::info("mesh policy version {} signed by an operator, offered from {}", offered->version,
                 request.remote_address());
    if (applied_) applied_();
  }
  std::string out;
  JsonWriter w(out);
  w.BeginObject().Key("version").Uint(policy_->version()).Key("taken").Bool(*taken).EndObject();
  respond(JsonResponse(200, std::move(out)));
}

}  // namespace hivemesh
