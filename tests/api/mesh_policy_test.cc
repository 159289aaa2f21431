// MeshPolicy (api/mesh_policy.h): a node takes a policy only if an issuer of its mesh signed it
// and it is newer than the one in force; it keeps it across restarts and refuses a tampered file.
#include "api/mesh_policy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "identity/issuer.h"
#include "identity/node_key.h"

namespace hivemesh {
namespace {

using identity::Certificate;
using identity::NodeKey;

constexpr std::string_view kDenyAll = "rules: []\n";
constexpr std::string_view kCameras =
    "rules:\n  - {name: cameras, from: 'client:cam-*', models: '*'}\n";

class MeshPolicyTest : public ::testing::Test {
 protected:
  MeshPolicyTest()
      : root_(identity::MakeRootCertificate(root_key_, identity::NewMeshId(), Now())),
        issuer_(identity::MakeIssuerCertificate(issuer_key_.public_key(), "first", root_, root_key_,
                                                Now())) {
    char dir[] = "/tmp/hivemesh-mesh-policy-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/policy";
  }
  ~MeshPolicyTest() override { std::filesystem::remove_all(dir_); }

  static identity::WallTime Now() { return std::chrono::system_clock::now(); }
  SignedPolicy Signed(uint64_t version, std::string_view document, const NodeKey& key) {
    return SignedPolicy{version, std::string(document),
                        key.Sign(identity::PolicyMessage(version, document))};
  }
  std::unique_ptr<MeshPolicy> Fresh() { return std::make_unique<MeshPolicy>(path_, holder_); }
  absl::Status CheckAnyone() const {
    return holder_->Get()->Check(Caller{}, "identity", PolicyVerb::kInfer);
  }

  NodeKey root_key_ = NodeKey::Generate();
  NodeKey issuer_key_ = NodeKey::Generate();
  Certificate root_;
  Certificate issuer_;
  std::string dir_, path_;
  std::shared_ptr<PolicyHolder> holder_ = std::make_shared<PolicyHolder>();
};

TEST_F(MeshPolicyTest, ANewerSignedPolicyIsTakenAndEnforced) {
  std::unique_ptr<MeshPolicy> p = Fresh();
  ASSERT_TRUE(p->Load({issuer_}).ok());  // nothing saved yet
  EXPECT_TRUE(CheckAnyone().ok());
  absl::StatusOr<bool> taken = p->Offer(Signed(1, kDenyAll, issuer_key_), {issuer_});
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_TRUE(*taken);
  EXPECT_EQ(p->version(), 1u);
  EXPECT_EQ(CheckAnyone().code(), absl::StatusCode::kPermissionDenied);
  // The same version again, or an older one, changes nothing (a replay).
  EXPECT_FALSE(*p->Offer(Signed(1, "", issuer_key_), {issuer_}));
  EXPECT_FALSE(*p->Offer(Signed(0, "", issuer_key_), {issuer_}));
  EXPECT_EQ(CheckAnyone().code(), absl::StatusCode::kPermissionDenied);
  // The empty document, newer: no policy any more.
  EXPECT_TRUE(*p->Offer(Signed(2, "", issuer_key_), {issuer_}));
  EXPECT_TRUE(CheckAnyone().ok());
}

TEST_F(MeshPolicyTest, AnOperatorsSignatureIsCheckedNowWhenOfferedAndAtSigningWhenSaved) {
  // The check the agent installs, faked: it records when it was asked to check the operator's
  // certificate, and accepts the signer "ops" only.
  std::vector<int64_t> asked_at;
  const MeshPolicy::OperatorCheck check = [&](std::string_view signer, std::string_view message,
                                              std::string_view signature,
                                              int64_t at) -> absl::StatusOr<std::string> {
    asked_at.push_back(at);
    if (signer != "ops" || signature != "sig:" + std::string(message)) {
      return absl::PermissionDeniedError("not an operator's");
    }
    return std::string("ops");
  };
  const uint64_t signed_ms = 1'700'000'000'123;
  SignedPolicy offered{signed_ms, std::string(kDenyAll),
                       "sig:" + identity::PolicyMessage(signed_ms, kDenyAll), "ops"};
  std::unique_ptr<MeshPolicy> p = Fresh();
  // Without a check, no operator's document is taken.
  EXPECT_EQ(p->Offer(offered, {issuer_}).status().code(), absl::StatusCode::kFailedPrecondition);
  p->SetOperatorCheck(check);
  SignedPolicy forged = offered;
  forged.signer = "someone";
  absl::StatusOr<bool> refused = p->Offer(forged, {issuer_});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("not signed by an operator"), std::string::npos);
  ASSERT_TRUE(*p->Offer(offered, {issuer_}));
  EXPECT_EQ(CheckAnyone().code(), absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(asked_at.size(), 2u);
  EXPECT_GT(asked_at.back(), 1'750'000'000) << "offered: the certificate is checked now";
  // Saved with its signer: a restarted node checks it at the time it was signed.
  std::unique_ptr<MeshPolicy> restarted = Fresh();
  restarted->SetOperatorCheck(check);
  ASSERT_TRUE(restarted->Load({issuer_}).ok());
  EXPECT_EQ(restarted->version(), signed_ms);
  EXPECT_EQ(asked_at.back(), 1'700'000'000);
  EXPECT_EQ(restarted->current().signer, "ops");
  // An issuer's newer version still follows it.
  EXPECT_TRUE(*restarted->Offer(Signed(signed_ms + 1, "", issuer_key_), {issuer_}));
}

TEST_F(MeshPolicyTest, OnlyAnIssuersSignatureOverThisVersionAndTextIsTaken) {
  std::unique_ptr<MeshPolicy> p = Fresh();
  ASSERT_TRUE(*p->Offer(Signed(1, kCameras, issuer_key_), {issuer_}));
  const NodeKey member = NodeKey::Generate();
  // A member's key, the root's key (not the issuer in the chain), a signature of another
  // version (replayed with a higher number) and of another text: refused, nothing changes.
  for (const SignedPolicy& forged :
       {Signed(2, "", member), Signed(2, "", root_key_),
        SignedPolicy{5, std::string(kCameras), Signed(1, kCameras, issuer_key_).signature},
        SignedPolicy{2, "", Signed(2, kCameras, issuer_key_).signature}}) {
    absl::StatusOr<bool> taken = p->Offer(forged, {issuer_});
    EXPECT_EQ(taken.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_NE(taken.status().message().find("not signed by an issuer"), std::string::npos);
  }
  EXPECT_EQ(p->version(), 1u);
  // A signed document that does not parse is refused too.
  EXPECT_EQ(p->Offer(Signed(3, "rules: {", issuer_key_), {issuer_}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->version(), 1u);
}

TEST_F(MeshPolicyTest, ApplyGivesTheNextVersionAndRefusesABadDocument) {
  std::unique_ptr<MeshPolicy> p = Fresh();
  auto sign = [this](uint64_t v, std::string_view d) {
    return issuer_key_.Sign(identity::PolicyMessage(v, d));
  };
  EXPECT_EQ(*p->Apply(kCameras, sign, {issuer_}), 1u);
  EXPECT_EQ(*p->Apply(kDenyAll, sign, {issuer_}), 2u);
  absl::StatusOr<uint64_t> bad = p->Apply("rules: [{name: x}]", sign, {issuer_});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("rule 1 ('x') has no 'from'"), std::string::npos);
  EXPECT_EQ(p->version(), 2u);
  EXPECT_TRUE(identity::VerifyPolicy(issuer_, 2, kDenyAll, p->current().signature));
}

TEST_F(MeshPolicyTest, ThePolicyInForceSurvivesARestartAndATamperedFileStopsTheNode) {
  ASSERT_TRUE(*Fresh()->Offer(Signed(4, kDenyAll, issuer_key_), {issuer_}));
  EXPECT_EQ(std::filesystem::status(path_).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  holder_ = std::make_shared<PolicyHolder>();
  std::unique_ptr<MeshPolicy> restarted = Fresh();
  ASSERT_TRUE(restarted->Load({issuer_}).ok());
  EXPECT_EQ(restarted->version(), 4u);
  EXPECT_EQ(CheckAnyone().code(), absl::StatusCode::kPermissionDenied);
  // Someone with the disk loosens the document: the node refuses to start with it.
  SignedPolicy loosened = restarted->current();
  loosened.document = "";
  {
    std::ofstream f(path_, std::ios::trunc);
    f << EncodeSignedPolicy(loosened);
  }
  absl::Status loaded = Fresh()->Load({issuer_});
  EXPECT_EQ(loaded.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(loaded.message().find("not signed by an issuer"), std::string::npos) << loaded;
  EXPECT_NE(loaded.message().find(path_), std::string::npos) << loaded;
  {
    std::ofstream f(path_, std::ios::trunc);
    f << "{not json";
  }
  EXPECT_EQ(Fresh()->Load({issuer_}).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MeshPolicyTest, SignedPoliciesDecodeOnlyInTheirShape) {
  const SignedPolicy p = Signed(3, kCameras, issuer_key_);
  absl::StatusOr<SignedPolicy> back = DecodeSignedPolicy(EncodeSignedPolicy(p));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, 3u);
  EXPECT_EQ(back->document, kCameras);
  EXPECT_EQ(back->signature, p.signature);
  EXPECT_EQ(back->signer, "");
  SignedPolicy by_operator = p;
  by_operator.signer = "-----BEGIN CERTIFICATE-----\n...";
  EXPECT_EQ(DecodeSignedPolicy(EncodeSignedPolicy(by_operator))->signer, by_operator.signer);
  const std::string big_signer =
      "{\"version\":1,\"document\":\"\",\"signature\":\"\",\"signer\":\"" +
      std::string(16385, 'a') + "\"}";
  for (std::string_view bad : std::initializer_list<std::string_view>{
           "", "[]", "{\"version\":1}", "{\"version\":-1,\"document\":\"\",\"signature\":\"\"}",
           "{\"version\":1,\"document\":\"\",\"signature\":\"zz\"}",
           "{\"version\":1,\"document\":\"\",\"signature\":\"\",\"signer\":7}",
           std::string_view(big_signer)}) {
    EXPECT_FALSE(DecodeSignedPolicy(bad).ok()) << bad;
  }
  const std::string huge = "{\"version\":1,\"document\":\"" +
                           std::string(kMaxPolicyBytes + 1, 'a') + "\",\"signature\":\"\"}";
  EXPECT_FALSE(DecodeSignedPolicy(huge).ok());
}

}  // namespace
}  // namespace hivemesh
