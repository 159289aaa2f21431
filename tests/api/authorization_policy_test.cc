#include "api/authorization_policy.h"

#include <gtest/gtest.h>

#include <string>

namespace hivemesh {
namespace {

constexpr Caller kAnyone{};
constexpr Caller kCam{Caller::Kind::kClient, "cam-1"};
constexpr Caller kDash{Caller::Kind::kClient, "dashboard"};

Policy MustParse(std::string_view yaml, uint64_t version = 7) {
  absl::StatusOr<Policy> p = Policy::Parse(yaml, version);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : Policy();
}

std::string ErrorOf(std::string_view yaml) {
  absl::StatusOr<Policy> p = Policy::Parse(yaml);
  EXPECT_FALSE(p.ok()) << yaml;
  return p.ok() ? "" : std::string(p.status().message());
}

TEST(AuthorizationPolicyTest, NoPolicyAllowsEveryone) {
  EXPECT_TRUE(Policy().Check(kAnyone, "yolo", PolicyVerb::kInfer).ok());
  const Policy empty = MustParse("# nothing here\n");
  EXPECT_TRUE(empty.empty());
  EXPECT_TRUE(empty.Check(kAnyone, "yolo", PolicyVerb::kInfer).ok());
}

TEST(AuthorizationPolicyTest, AnEmptyRuleListDeniesAllButMembersAndOperators) {
  const Policy p = MustParse("rules: []\n");
  EXPECT_FALSE(p.empty());
  const absl::Status s = p.Check(kAnyone, "yolo", PolicyVerb::kInfer);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("no rule of the mesh policy (version 7) allows anyone to infer "
                             "model 'yolo'"),
            std::string_view::npos)
      << s;
  EXPECT_TRUE(p.Check({Caller::Kind::kMember, "node-2"}, "yolo", PolicyVerb::kInfer).ok());
  EXPECT_TRUE(p.Check({Caller::Kind::kOperator, "ops"}, "yolo", PolicyVerb::kRead).ok());
}

TEST(AuthorizationPolicyTest, AllowRulesMatchCallerModelAndVerb) {
  const Policy p = MustParse(R"(
kind: AuthorizationPolicy
rules:
  - name: cameras-infer
    from: [client:cam-*]
    models: [yolo*, resnet]
    verbs: [infer]
  - name: public-metadata
    from: anyone
    models: "*"
    verbs: read
)");
  EXPECT_TRUE(p.Check(kCam, "yolo-v8", PolicyVerb::kInfer).ok());
  EXPECT_TRUE(p.Check(kCam, "resnet", PolicyVerb::kInfer).ok());
  EXPECT_FALSE(p.Check(kCam, "resnet50", PolicyVerb::kInfer).ok());  // exact, no '*'
  EXPECT_FALSE(p.Check(kDash, "yolo", PolicyVerb::kInfer).ok());
  EXPECT_FALSE(p.Check(kAnyone, "yolo", PolicyVerb::kInfer).ok());
  EXPECT_TRUE(p.Check(kAnyone, "yolo", PolicyVerb::kRead).ok());
  // A client certificate name is not an operator's.
  const Policy ops = MustParse("rules: [{name: r, from: 'operator:*', models: '*'}]");
  EXPECT_FALSE(ops.Check(kCam, "yolo", PolicyVerb::kInfer).ok());
}

TEST(AuthorizationPolicyTest, ADenyRuleWinsAndIsNamed) {
  const Policy p = MustParse(R"(
rules:
  - name: everyone
    from: anyone
    models: "*"
  - name: no-cam-7-on-faces
    action: deny
    from: [client:cam-7]
    models: [faces]
)",
                             12);
  EXPECT_TRUE(p.Check({Caller::Kind::kClient, "cam-7"}, "yolo", PolicyVerb::kInfer).ok());
  const absl::Status s = p.Check({Caller::Kind::kClient, "cam-7"}, "faces", PolicyVerb::kInfer);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("denied by rule 'no-cam-7-on-faces' of the mesh policy (version 12)"),
            std::string_view::npos)
      << s;
  EXPECT_TRUE(p.Check(kCam, "faces", PolicyVerb::kInfer).ok());
}

TEST(AuthorizationPolicyTest, BadDocumentsAreRefusedNamingTheRuleAndField) {
  EXPECT_NE(ErrorOf("rules: [").find("not YAML"), std::string::npos);
  EXPECT_NE(ErrorOf("- a\n- b\n").find("not a mapping"), std::string::npos);
  EXPECT_NE(ErrorOf("rule: []").find("unknown field 'rule'"), std::string::npos);
  EXPECT_NE(ErrorOf("kind: Other\nrules: []").find("AuthorizationPolicy"), std::string::npos);
  EXPECT_NE(ErrorOf("rules: {a: b}").find("not a list"), std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{from: anyone, models: a}]").find("rule 1 has no name"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, models: a}]").find("rule 1 ('r') has no 'from'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: anyone}]").find("has no 'models'"), std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: root, models: a}]").find("'root' is not anyone"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: 'client:a b', models: a}]").find("'a b'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: anyone, models: a, verbs: write}]")
                .find("'write' is not infer or read"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: anyone, models: a, action: maybe}]")
                .find("'allow' or 'deny'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: anyone, models: a, model: b}]")
                .find("unknown field 'model'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: anyone, models: a}, {name: r, from: anyone, "
                    "models: b}]")
                .find("rule 2 ('r'): another rule has that name"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: [], models: a}]").find("from is empty"),
            std::string::npos);
  EXPECT_NE(ErrorOf("rules: [{name: r, from: [[a]], models: a}]").find("not a string"),
            std::string::npos);
}

TEST(AuthorizationPolicyTest, OversizedDocumentsAreRefused) {
  std::string big = "rules:\n";
  for (size_t i = 0; i <= kMaxPolicyRules; ++i) {
    big += "  - {name: r" + std::to_string(i) + ", from: anyone, models: a}\n";
  }
  EXPECT_NE(ErrorOf(big).find("more than the limit of 256"), std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMaxPolicyBytes + 1, '#')).find("bytes, more than the limit"),
            std::string::npos);
  // Deep nesting is refused by the parser or the field checks, never crashes it.
  const std::string deep = "rules: " + std::string(5000, '[') + std::string(5000, ']');
  EXPECT_FALSE(Policy::Parse(deep).ok());
}

TEST(AuthorizationPolicyTest, TlsPeerNamesStandForCallers) {
  EXPECT_EQ(CallerOfTlsPeer("").kind, Caller::Kind::kAnyone);
  EXPECT_EQ(CallerOfTlsPeer("node-3").kind, Caller::Kind::kMember);
  const std::string peer = TlsPeerName(Caller::Kind::kClient, "cam-1");
  EXPECT_EQ(peer, "client:cam-1");
  const Caller c = CallerOfTlsPeer(peer);
  EXPECT_EQ(c.kind, Caller::Kind::kClient);
  EXPECT_EQ(c.name, "cam-1");
  EXPECT_EQ(CallerOfTlsPeer("operator:ops").kind, Caller::Kind::kOperator);
  EXPECT_EQ(DescribeCaller(CallerOfTlsPeer("operator:ops")), "operator 'ops'");
}

}  // namespace
}  // namespace hivemesh
