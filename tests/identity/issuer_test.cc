// The issuer kernel (identity/issuer.h): tokens, joins and renewals, with the time passed in.
#include "identity/issuer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hivemesh::identity {
namespace {

using std::chrono::hours;
using ::testing::HasSubstr;

WallTime T0() { return WallTime(std::chrono::seconds(1'800'000'000)); }

class IssuerTest : public ::testing::Test {
 protected:
  IssuerTest()
      : root_(MakeRootCertificate(root_key_, NewMeshId(), T0())),
        issuer_(MakeIssuerCertificate(issuer_key_.public_key(), "first", root_, root_key_, T0())),
        kernel_(issuer_, issuer_key_, {root_}, "first") {}

  JoinRequest Request(const JoinToken& t, const NodeKey& key, std::string name = "cam-1") {
    JoinRequest r;
    r.token_id = t.id;
    r.token_secret = t.secret;
    r.name = std::move(name);
    r.labels = {{"zone", "a"}};
    r.public_key = key.public_key();
    return r;
  }
  std::string Refusal(const absl::StatusOr<Issued>& r) {
    return r.ok() ? std::string("issued") : std::string(r.status().message());
  }

  NodeKey root_key_ = NodeKey::Generate();
  NodeKey issuer_key_ = NodeKey::Generate();
  Certificate root_;
  Certificate issuer_;
  Issuer kernel_;
  Issuer::KeyOf free_ = [](std::string_view) { return std::nullopt; };
};

TEST_F(IssuerTest, AValidTokenGetsACertificateWithItsRoleThatChainsToTheRoot) {
  const JoinToken t = kernel_.CreateToken(Role::kOperator, hours(24), 0, T0());
  EXPECT_EQ(t.ca_digest, root_.Digest());
  const NodeKey key = NodeKey::Generate();
  absl::StatusOr<Issued> issued = kernel_.Join(Request(t, key), T0(), free_);
  ASSERT_TRUE(issued.ok()) << issued.status();
  absl::StatusOr<NodeIdentity> id =
      VerifyNodeCertificate(issued->cert, issued->chain, issued->roots, T0());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "cam-1");
  EXPECT_EQ(id->role, Role::kOperator);
  EXPECT_EQ(id->labels.at("zone"), "a");
  EXPECT_EQ(id->public_key, key.public_key());
  EXPECT_EQ(id->not_after, T0() + kNodeValidity);
  ASSERT_EQ(issued->roots.size(), 1u);
  EXPECT_EQ(issued->roots[0].Digest(), t.ca_digest);
  const std::vector<TokenRecord> tokens = kernel_.Tokens(T0());
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].used, 1);
  EXPECT_EQ(tokens[0].created_by, "first");
  EXPECT_EQ(tokens[0].secret_sha256.size(), 64u);
  EXPECT_EQ(tokens[0].secret_sha256.find(t.secret), std::string::npos) << "only a hash is kept";
}

TEST_F(IssuerTest, WrongUnknownExpiredRevokedAndUsedUpTokensAreRefused) {
  const NodeKey key = NodeKey::Generate();
  const JoinToken t = kernel_.CreateToken(Role::kNode, hours(1), 2, T0());
  JoinRequest wrong = Request(t, key);
  wrong.token_secret[0] = wrong.token_secret[0] == 'a' ? 'b' : 'a';
  EXPECT_THAT(Refusal(kernel_.Join(wrong, T0(), free_)), HasSubstr("unknown token or wrong"));
  JoinRequest unknown = Request(t, key);
  unknown.token_id = "00000000";
  EXPECT_EQ(Refusal(kernel_.Join(unknown, T0(), free_)), Refusal(kernel_.Join(wrong, T0(), free_)));
  EXPECT_THAT(Refusal(kernel_.Join(Request(t, key), T0() + hours(2), free_)),
              HasSubstr("expired 3600 s ago"));
  // Two uses: the third join is refused; refusals used none.
  EXPECT_TRUE(kernel_.Join(Request(t, key, "a"), T0(), free_).ok());
  EXPECT_TRUE(kernel_.Join(Request(t, NodeKey::Generate(), "b"), T0(), free_).ok());
  EXPECT_THAT(Refusal(kernel_.Join(Request(t, NodeKey::Generate(), "c"), T0(), free_)),
              HasSubstr("used up (2 uses)"));
  const JoinToken r = kernel_.CreateToken(Role::kNode, hours(1), 0, T0());
  ASSERT_TRUE(kernel_.RevokeToken(r.id).ok());
  EXPECT_THAT(Refusal(kernel_.Join(Request(r, key), T0(), free_)), HasSubstr("revoked"));
  EXPECT_FALSE(kernel_.RevokeToken("ffffffff").ok());
  // Expired tokens leave the list, and are forgotten a day later.
  EXPECT_EQ(kernel_.Tokens(T0()).size(), 2u);
  EXPECT_EQ(kernel_.Tokens(T0() + hours(2)).size(), 0u);
  kernel_.ForgetExpired(T0() + hours(26));
  EXPECT_THAT(Refusal(kernel_.Join(Request(t, key), T0(), free_)), HasSubstr("unknown token"));
}

TEST_F(IssuerTest, ANameBoundToAnotherKeyOrARevokedKeyIsRefused) {
  const JoinToken t = kernel_.CreateToken(Role::kNode, hours(1), 0, T0());
  const NodeKey owner = NodeKey::Generate();
  const NodeKey thief = NodeKey::Generate();
  const Issuer::KeyOf bound = [&](std::string_view name) -> std::optional<std::string> {
    if (name == "cam-1") return owner.public_key();
    return std::nullopt;
  };
  absl::StatusOr<Issued> stolen = kernel_.Join(Request(t, thief), T0(), bound);
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(stolen.status().message(), HasSubstr("belongs to another node's key"));
  EXPECT_TRUE(kernel_.Join(Request(t, owner), T0(), bound).ok()) << "its own name, again";
  kernel_.RevokeKey(owner.public_key());
  EXPECT_TRUE(kernel_.IsRevoked(owner.public_key()));
  EXPECT_THAT(Refusal(kernel_.Join(Request(t, owner), T0(), bound)), HasSubstr("revoked"));
  // Bad names and labels are refused before a use is spent, naming the field.
  const JoinToken once = kernel_.CreateToken(Role::kNode, hours(1), 1, T0());
  JoinRequest bad = Request(once, NodeKey::Generate(), "cam 1");
  EXPECT_THAT(Refusal(kernel_.Join(bad, T0(), free_)), HasSubstr("name"));
  bad = Request(once, NodeKey::Generate());
  bad.labels = {{"zone", "a,b"}};
  EXPECT_THAT(Refusal(kernel_.Join(bad, T0(), free_)), HasSubstr("label zone"));
  bad.labels = {};
  bad.public_key = "xx";
  EXPECT_THAT(Refusal(kernel_.Join(bad, T0(), free_)), HasSubstr("public key"));
  EXPECT_TRUE(kernel_.Join(Request(once, NodeKey::Generate(), "cam-2"), T0(), free_).ok());
}

// A node offline for two weeks with a 7-day certificate renews by its key alone.
TEST_F(IssuerTest, AnExpiredCertificateIsRenewedByItsKeyButNotAnotherOrARevokedOne) {
  const JoinToken t = kernel_.CreateToken(Role::kNode, hours(1), 1, T0());
  const NodeKey key = NodeKey::Generate();
  absl::StatusOr<Issued> first = kernel_.Join(Request(t, key), T0(), free_);
  ASSERT_TRUE(first.ok());
  const WallTime back = T0() + hours(24 * 14);
  ASSERT_FALSE(VerifyNodeCertificate(first->cert, first->chain, first->roots, back).ok());
  absl::StatusOr<Issued> renewed = kernel_.Renew(first->cert, first->chain, key.public_key(), back);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  absl::StatusOr<NodeIdentity> id =
      VerifyNodeCertificate(renewed->cert, renewed->chain, renewed->roots, back);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "cam-1");
  EXPECT_EQ(id->labels.at("zone"), "a");
  EXPECT_EQ(id->not_after, back + kNodeValidity);
  // Proved by another key: refused.
  EXPECT_THAT(
      Refusal(kernel_.Renew(first->cert, first->chain, NodeKey::Generate().public_key(), back)),
      HasSubstr("not for the key that was proved"));
  // Too long offline: refused, with what to do.
  EXPECT_THAT(Refusal(kernel_.Renew(first->cert, first->chain, key.public_key(),
                                    T0() + kNodeValidity + kMaxOffline + hours(1))),
              HasSubstr("join again with a token"));
  // Another mesh's certificate: refused.
  const NodeKey other_root_key = NodeKey::Generate();
  const Certificate other_root = MakeRootCertificate(other_root_key, NewMeshId(), T0());
  NodeIdentity who;
  who.name = "stranger";
  who.public_key = key.public_key();
  const Certificate foreign = *IssueNodeCertificate(who, other_root, other_root_key, T0());
  EXPECT_FALSE(kernel_.Renew(foreign, {}, key.public_key(), T0()).ok());
  // Revoked: never renewed.
  kernel_.RevokeKey(key.public_key());
  EXPECT_THAT(Refusal(kernel_.Renew(renewed->cert, renewed->chain, key.public_key(), back)),
              HasSubstr("revoked"));
}

TEST_F(IssuerTest, RevocationsAreSignedByTheIssuerAndCheckedAgainstItsCertificate) {
  const std::string key = NodeKey::Generate().public_key();
  const std::string signature = kernel_.SignRevocation(key, "cam-7");
  EXPECT_TRUE(VerifyRevocation(issuer_, key, "cam-7", signature));
  EXPECT_FALSE(VerifyRevocation(issuer_, key, "cam-8", signature)) << "bound to the name";
  EXPECT_FALSE(VerifyRevocation(issuer_, NodeKey::Generate().public_key(), "cam-7", signature));
  // Another issuer of another mesh, and a certificate that is no CA, vouch for nothing.
  const NodeKey stranger = NodeKey::Generate();
  const Certificate other_root = MakeRootCertificate(stranger, NewMeshId(), T0());
  EXPECT_FALSE(VerifyRevocation(other_root, key, "cam-7", signature));
  EXPECT_FALSE(
      VerifyRevocation(other_root, key, "cam-7", stranger.Sign(RevocationMessage(key, "x"))));
  NodeIdentity who;
  who.name = "cam-9";
  who.public_key = stranger.public_key();
  const Certificate leaf = *IssueNodeCertificate(who, issuer_, issuer_key_, T0());
  EXPECT_FALSE(
      VerifyRevocation(leaf, key, "cam-7", stranger.Sign(RevocationMessage(key, "cam-7"))));
}

TEST_F(IssuerTest, ClientCertificatesNameAClientNotAMemberAndAreNotRenewed) {
  const NodeKey key = NodeKey::Generate();
  absl::StatusOr<Issued> issued =
      kernel_.IssueClient("ops", Role::kOperator, key.public_key(), hours(24 * 30), T0());
  ASSERT_TRUE(issued.ok()) << issued.status();
  absl::StatusOr<NodeIdentity> id =
      VerifyNodeCertificate(issued->cert, issued->chain, issued->roots, T0());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(id->client);
  EXPECT_EQ(id->role, Role::kOperator);
  EXPECT_EQ(id->name, "ops");
  EXPECT_THAT(id->SpiffeId(), HasSubstr("/client/ops"));
  EXPECT_EQ(id->not_after, T0() + hours(24 * 30));
  // Not renewed, even before it expires: a client gets a new one.
  EXPECT_THAT(Refusal(kernel_.Renew(issued->cert, issued->chain, key.public_key(), T0())),
              HasSubstr("client certificate, which is not renewed"));
  // Refusals name the field.
  EXPECT_THAT(Refusal(kernel_.IssueClient("a", Role::kNode, key.public_key(), hours(1), T0())),
              HasSubstr("role"));
  EXPECT_THAT(Refusal(kernel_.IssueClient("a b", Role::kClient, key.public_key(), hours(1), T0())),
              HasSubstr("outside [A-Za-z0-9._-]"));
  EXPECT_THAT(
      Refusal(kernel_.IssueClient("a", Role::kClient, key.public_key(), hours(24 * 400), T0())),
      HasSubstr("at most 365 days"));
  EXPECT_THAT(Refusal(kernel_.IssueClient("a", Role::kClient, "short", hours(1), T0())),
              HasSubstr("key"));
  kernel_.RevokeKey(key.public_key());
  EXPECT_THAT(Refusal(kernel_.IssueClient("a", Role::kClient, key.public_key(), hours(1), T0())),
              HasSubstr("revoked"));
}

TEST_F(IssuerTest, PoliciesAreSignedWithTheirVersion) {
  const std::string sig = kernel_.SignPolicy(3, "rules: []");
  EXPECT_TRUE(VerifyPolicy(issuer_, 3, "rules: []", sig));
  EXPECT_FALSE(VerifyPolicy(issuer_, 4, "rules: []", sig)) << "a replayed signature, new version";
  EXPECT_FALSE(VerifyPolicy(issuer_, 3, "rules: [] ", sig));
  EXPECT_FALSE(VerifyPolicy(root_, 3, "rules: []", sig));
  // A member's key signs nothing the mesh takes: its certificate is not a CA.
  const NodeKey member = NodeKey::Generate();
  absl::StatusOr<Issued> node =
      kernel_.IssueClient("m", Role::kClient, member.public_key(), hours(1), T0());
  ASSERT_TRUE(node.ok());
  EXPECT_FALSE(
      VerifyPolicy(node->cert, 3, "rules: []", member.Sign(PolicyMessage(3, "rules: []"))));
}

TEST_F(IssuerTest, TokensFromOtherIssuersMergeUsesAndRevocations) {
  const NodeKey other_key = NodeKey::Generate();
  Issuer other(MakeIssuerCertificate(other_key.public_key(), "second", root_, root_key_, T0()),
               other_key, {root_}, "second");
  const JoinToken t = other.CreateToken(Role::kNode, hours(1), 2, T0());
  ASSERT_TRUE(other.Join(Request(t, NodeKey::Generate(), "a"), T0(), free_).ok());
  for (const TokenRecord& r : other.Tokens(T0())) kernel_.AddToken(r);
  // This issuer accepts the other's token, and counts its use there.
  absl::StatusOr<Issued> here = kernel_.Join(Request(t, NodeKey::Generate(), "b"), T0(), free_);
  ASSERT_TRUE(here.ok()) << here.status();
  EXPECT_TRUE(VerifyNodeCertificate(here->cert, here->chain, {root_}, T0()).ok());
  EXPECT_THAT(Refusal(kernel_.Join(Request(t, NodeKey::Generate(), "c"), T0(), free_)),
              HasSubstr("used up"));
  // An older record does not lower the count; a revocation sticks.
  TokenRecord stale = other.Tokens(T0())[0];
  stale.used = 0;
  kernel_.AddToken(stale);
  EXPECT_EQ(kernel_.Tokens(T0())[0].used, 2);
  ASSERT_TRUE(other.RevokeToken(t.id).ok());
  kernel_.AddToken(other.Tokens(T0())[0]);
  stale.revoked = false;
  kernel_.AddToken(stale);
  EXPECT_TRUE(kernel_.Tokens(T0())[0].revoked);
}

// More than one issuer: an issuer token grants issuer rights, only where the root key is.
TEST_F(IssuerTest, AnIssuerTokenCertifiesTheJoiningNodesIssuerKeyWhereTheRootKeyIs) {
  const JoinToken t = kernel_.CreateToken(Role::kNode, hours(1), 0, T0(), /*issuer=*/true);
  EXPECT_TRUE(kernel_.Tokens(T0())[0].issuer);
  const NodeKey node = NodeKey::Generate(), own_issuer = NodeKey::Generate();
  JoinRequest r = Request(t, node, "gw-2");
  r.issuer_key = own_issuer.public_key();
  // Without the root key (exported, or a granted issuer): refused, saying where to go.
  absl::StatusOr<Issued> refused = kernel_.Join(r, T0(), free_);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Refusal(refused), HasSubstr("root key"));
  kernel_.UseRootKey(root_key_);
  EXPECT_TRUE(kernel_.holds_root_key());
  // Without an issuer key: refused.
  JoinRequest keyless = Request(t, node, "gw-2");
  EXPECT_EQ(kernel_.Join(keyless, T0(), free_).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Issued> issued = kernel_.Join(r, T0(), free_);
  ASSERT_TRUE(issued.ok()) << issued.status();
  ASSERT_TRUE(issued->issuer_cert.has_value());
  EXPECT_TRUE(VerifyIssuerCertificate(*issued->issuer_cert, {root_}, T0()).ok());
  EXPECT_EQ(issued->issuer_cert->public_key(), own_issuer.public_key());
  EXPECT_EQ(IssuerName(*issued->issuer_cert), "gw-2");
  // What the new issuer signs chains to the root through its certificate.
  Issuer second(*issued->issuer_cert, own_issuer, {root_}, "gw-2");
  const JoinToken t2 = second.CreateToken(Role::kNode, hours(1), 0, T0());
  absl::StatusOr<Issued> by_second =
      second.Join(Request(t2, NodeKey::Generate(), "cam-9"), T0(), free_);
  ASSERT_TRUE(by_second.ok()) << by_second.status();
  EXPECT_TRUE(VerifyNodeCertificate(by_second->cert, by_second->chain, {root_}, T0()).ok());
  EXPECT_FALSE(by_second->issuer_cert.has_value()) << "a node token grants no issuer rights";
  // The new issuer cannot pass its rights on: it holds no root key.
  const JoinToken t3 = second.CreateToken(Role::kNode, hours(1), 0, T0(), /*issuer=*/true);
  JoinRequest onward = Request(t3, NodeKey::Generate(), "gw-3");
  onward.issuer_key = NodeKey::Generate().public_key();
  EXPECT_EQ(second.Join(onward, T0(), free_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A certificate signed by an issuer whose key was since revoked is not renewed by another.
TEST_F(IssuerTest, ACertificateARevokedIssuerSignedIsNotRenewed) {
  const NodeKey other_key = NodeKey::Generate();
  Issuer other(MakeIssuerCertificate(other_key.public_key(), "second", root_, root_key_, T0()),
               other_key, {root_}, "second");
  const JoinToken t = other.CreateToken(Role::kNode, hours(1), 0, T0());
  const NodeKey key = NodeKey::Generate();
  absl::StatusOr<Issued> first = other.Join(Request(t, key), T0(), free_);
  ASSERT_TRUE(first.ok());
  // Renewed here while the other issuer stands, and then no more.
  EXPECT_TRUE(kernel_.Renew(first->cert, first->chain, key.public_key(), T0()).ok());
  kernel_.RevokeKey(other_key.public_key());
  EXPECT_THAT(Refusal(kernel_.Renew(first->cert, first->chain, key.public_key(), T0())),
              HasSubstr("signed by a revoked issuer"));
}

}  // namespace
}  // namespace hivemesh::identity
