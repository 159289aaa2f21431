// The mesh's authorization policy (docs/security.md, "The policy document"): who may call which
// model with which verb. A pure kernel: parsed from YAML and asked about one call at a time; the
// agent keeps the current one (signed by an issuer, spread through the mesh) and the front ends
// (REST, gRPC) ask it before they serve a model.
//
//   rules:
//     - name: cameras-infer        # named in every refusal it causes
//       action: allow              # allow (the default) or deny
//       from: [client:cam-*]       # anyone | client:<name> | operator:<name>; a trailing * matches
//       models: [yolo*]            # model names; a trailing * matches; "*" is every model
//       verbs: [infer]             # infer | read (metadata, ready, statistics); default both
//
// A call is refused if a deny rule matches it (the refusal names that rule), else allowed if an
// allow rule matches it, else refused: once a policy exists, what it does not allow is denied.
// Members of the mesh (a node's certificate: forwarded requests, whose origin checked them) and
// operators (who can change the policy anyway) are not subject to it. Without a policy (none
// applied, or the empty document) every call is allowed, as before policies existed.
//
// Thread safety: a Policy is immutable once parsed; Check may be called from any thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace hivemesh {

// Who makes a call, as the node's front end saw it.
struct Caller {
  enum class Kind { kAnyone, kMember, kClient, kOperator };
  Kind kind = Kind::kAnyone;
  std::string_view name;  // the certificate's name; empty for kAnyone
};

// The caller a TLS peer name stands for (HttpRequest::tls_peer()): "" is anyone,
// "client:<name>" and "operator:<name>" a client certificate of that role, anything else a
// member (member names cannot hold ':').
Caller CallerOfTlsPeer(std::string_view tls_peer);
// "client:<name>" / "operator:<name>": what the TLS check names a client certificate's holder.
std::string TlsPeerName(Caller::Kind kind, std::string_view name);
// "anyone", "member 'a'", "client 'b'", "operator 'c'".
std::string DescribeCaller(const Caller& caller);

enum class PolicyVerb { kInfer, kRead };
std::string_view PolicyVerbName(PolicyVerb verb);

inline constexpr size_t kMaxPolicyBytes = 64 * 1024;
inline constexpr size_t kMaxPolicyRules = 256;

class Policy {
 public:
  struct Rule {
    std::string name;
    bool deny = false;
    std::vector<std::string> from;    // anyone | client:<pattern> | operator:<pattern>
    std::vector<std::string> models;  // patterns
    bool infer = true;
    bool read = true;
  };

  // The empty policy: every call allowed.
  Policy() = default;
  // Parses a policy document. Empty text (or only comments) is the empty policy. Errors name the
  // rule (by its position and name) and the field: unknown keys, an unknown action, verb or
  // kind of caller, a rule without a name, from or models, two rules of one name, more than
  // kMaxPolicyRules rules or kMaxPolicyBytes bytes.
  static absl::StatusOr<Policy> Parse(std::string_view yaml, uint64_t version = 0);

  // OK, or PERMISSION_DENIED naming the rule that refuses (or saying none allows).
  absl::Status Check(const Caller& caller, std::string_view model, PolicyVerb verb) const;

  bool empty() const { return !present_; }
  uint64_t version() const { return version_; }
  const std::vector<Rule>& rules() const { return rules_; }

 private:
  bool present_ = false;  // a document with a `rules` list (possibly empty: deny all)
  uint64_t version_ = 0;
  std::vector<Rule> rules_;
};

// The policy in force on a node: replaced when a newer one arrives, read by every call.
class PolicyHolder {
 public:
  std::shared_ptr<const Policy> Get() const {
    absl::MutexLock lock(&mu_);
    return policy_;
  }
  void Set(std::shared_ptr<const Policy> policy) {
    absl::MutexLock lock(&mu_);
    policy_ = std::move(policy);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const Policy> policy_ ABSL_GUARDED_BY(mu_) = std::make_shared<const Policy>();
};

}  // namespace hivemesh
