// The mesh's certificates and join tokens (identity/certs.h), with the time passed in.
#include "identity/certs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hivemesh::identity {
namespace {

using std::chrono::hours;
using ::testing::HasSubstr;

WallTime Now() { return WallTime(std::chrono::seconds(1'800'000'000)); }  // 2027-01-15

// A mesh: its root and one issuer, with their keys.
struct Mesh {
  NodeKey root_key = NodeKey::Generate();
  NodeKey issuer_key = NodeKey::Generate();
  std::string id = NewMeshId();
  Certificate root = MakeRootCertificate(root_key, id, Now());
  Certificate issuer =
      MakeIssuerCertificate(issuer_key.public_key(), "first", root, root_key, Now());

  Certificate Issue(const NodeKey& key, std::string name = "cam-1", Role role = Role::kNode,
                    std::map<std::string, std::string> labels = {{"zone", "a"}},
                    WallTime at = Now(), std::chrono::seconds life = kNodeValidity) {
    NodeIdentity who;
    who.name = std::move(name);
    who.role = role;
    who.labels = std::move(labels);
    who.public_key = key.public_key();
    absl::StatusOr<Certificate> c = IssueNodeCertificate(who, issuer, issuer_key, at, life);
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  }
  absl::StatusOr<NodeIdentity> Verify(const Certificate& leaf, WallTime at = Now(),
                                      bool allow_expired = false) {
    return VerifyNodeCertificate(leaf, {issuer}, {root}, at, allow_expired);
  }
};

TEST(CertsTest, ANodeCertificateBindsTheNodesKeyNameRoleAndLabels) {
  Mesh mesh;
  const NodeKey key = NodeKey::Generate();
  const Certificate cert =
      mesh.Issue(key, "cam-1", Role::kOperator, {{"zone", "a"}, {"line", "3"}});
  absl::StatusOr<NodeIdentity> id = mesh.Verify(cert);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "cam-1");
  EXPECT_EQ(id->role, Role::kOperator);
  EXPECT_EQ(id->labels, (std::map<std::string, std::string>{{"line", "3"}, {"zone", "a"}}));
  EXPECT_EQ(id->public_key, key.public_key());
  EXPECT_EQ(id->mesh_id, mesh.id);
  EXPECT_EQ(id->SpiffeId(), "spiffe://" + mesh.id + "/node/cam-1");
  EXPECT_EQ(id->not_before, Now() - kBackdate);
  EXPECT_EQ(id->not_after, Now() + kNodeValidity);
  EXPECT_EQ(id->serial.size(), 32u) << id->serial;
  EXPECT_FALSE(cert.is_ca());
  EXPECT_TRUE(mesh.root.is_ca());
  EXPECT_TRUE(mesh.issuer.is_ca());
  EXPECT_EQ(mesh.root.MeshId(), mesh.id);
  EXPECT_EQ(mesh.id.size(), 32u);
  EXPECT_NE(mesh.id, NewMeshId());
  // Two certificates for the same node differ in serial.
  EXPECT_NE(mesh.Verify(mesh.Issue(key))->serial, id->serial);
}

TEST(CertsTest, PemAndDerRoundTripAndTheRootDigestIsStable) {
  Mesh mesh;
  const Certificate cert = mesh.Issue(NodeKey::Generate());
  absl::StatusOr<Certificate> back = Certificate::FromPem(cert.ToPem());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Der(), cert.Der());
  EXPECT_EQ(Certificate::FromDer(cert.Der())->Digest(), cert.Digest());
  absl::StatusOr<std::vector<Certificate>> chain =
      Certificate::AllFromPem(cert.ToPem() + mesh.issuer.ToPem() + mesh.root.ToPem());
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ((*chain)[2].Digest(), mesh.root.Digest());
  EXPECT_EQ(mesh.root.Digest().size(), 64u);
  EXPECT_NE(mesh.root.Digest(), Mesh().root.Digest());
  EXPECT_FALSE(Certificate::FromPem("-----BEGIN CERTIFICATE-----\nAAAA\n").ok());
  EXPECT_FALSE(Certificate::FromDer("junk").ok());
  EXPECT_FALSE(Certificate::AllFromPem("").ok());
}

TEST(CertsTest, AnExpiredCertificateIsRefusedButMayBeRenewedByItsKey) {
  Mesh mesh;
  const Certificate cert = mesh.Issue(NodeKey::Generate());
  const WallTime later = Now() + kNodeValidity + hours(24 * 7);  // offline two weeks
  absl::StatusOr<NodeIdentity> expired = mesh.Verify(cert, later);
  ASSERT_FALSE(expired.ok());
  EXPECT_THAT(expired.status().message(), HasSubstr("expired"));
  absl::StatusOr<NodeIdentity> renewable = mesh.Verify(cert, later, /*allow_expired=*/true);
  ASSERT_TRUE(renewable.ok()) << renewable.status();
  EXPECT_EQ(renewable->name, "cam-1");
  // Not yet valid, beyond the backdating.
  EXPECT_THAT(mesh.Verify(cert, Now() - hours(1)).status().message(), HasSubstr("not yet valid"));
  // Valid inside the backdating (a clock a little behind the issuer's).
  EXPECT_TRUE(mesh.Verify(cert, Now() - std::chrono::seconds(60)).ok());
}

TEST(CertsTest, OnlyTheMeshsOwnChainIsTrusted) {
  Mesh mesh, other;
  const Certificate foreign = other.Issue(NodeKey::Generate());
  EXPECT_THAT(mesh.Verify(foreign).status().message(), HasSubstr("unable to get local issuer"));
  // Another mesh's issuer in the chain does not help.
  EXPECT_FALSE(VerifyNodeCertificate(foreign, {other.issuer}, {mesh.root}, Now()).ok());
  // Without the issuer, the leaf does not chain.
  EXPECT_FALSE(VerifyNodeCertificate(mesh.Issue(NodeKey::Generate()), {}, {mesh.root}, Now()).ok());
  // A node certificate cannot issue: one signed by a node's key does not verify.
  const NodeKey node_key = NodeKey::Generate();
  const Certificate node = mesh.Issue(node_key);
  NodeIdentity who;
  who.name = "mallory";
  who.public_key = NodeKey::Generate().public_key();
  EXPECT_FALSE(IssueNodeCertificate(who, node, node_key, Now()).ok()) << "not a CA";
  // An issuer with a key that is not its certificate's is refused.
  EXPECT_FALSE(IssueNodeCertificate(who, mesh.issuer, node_key, Now()).ok());
  // A CA certificate is not a node certificate.
  EXPECT_FALSE(VerifyNodeCertificate(mesh.issuer, {}, {mesh.root}, Now()).ok());
}

TEST(CertsTest, DuringRootRotationBothRootsAreTrusted) {
  Mesh old_mesh;
  // The new root is of the same mesh (rotation keeps the mesh id).
  const NodeKey new_root_key = NodeKey::Generate();
  const Certificate new_root = MakeRootCertificate(new_root_key, old_mesh.id, Now());
  const NodeKey new_issuer_key = NodeKey::Generate();
  const Certificate new_issuer =
      MakeIssuerCertificate(new_issuer_key.public_key(), "second", new_root, new_root_key, Now());
  const Certificate old_leaf = old_mesh.Issue(NodeKey::Generate());
  NodeIdentity who;
  who.name = "cam-2";
  who.public_key = NodeKey::Generate().public_key();
  const Certificate new_leaf = *IssueNodeCertificate(who, new_issuer, new_issuer_key, Now());
  const std::vector<Certificate> bundle = {old_mesh.root, new_root};
  const std::vector<Certificate> issuers = {old_mesh.issuer, new_issuer};
  EXPECT_TRUE(VerifyNodeCertificate(old_leaf, issuers, bundle, Now()).ok());
  EXPECT_TRUE(VerifyNodeCertificate(new_leaf, issuers, bundle, Now()).ok());
  EXPECT_FALSE(VerifyNodeCertificate(old_leaf, issuers, {new_root}, Now()).ok());
  // A root of another mesh that signs a leaf claiming this mesh is caught by the mesh check.
  Mesh stranger;
  who.name = "cam-3";
  const NodeKey k = NodeKey::Generate();
  who.public_key = k.public_key();
  const Certificate leaf = *IssueNodeCertificate(who, stranger.issuer, stranger.issuer_key, Now());
  EXPECT_EQ(leaf.Identity()->mesh_id, stranger.id);
  EXPECT_FALSE(VerifyNodeCertificate(leaf, {stranger.issuer}, {old_mesh.root}, Now()).ok());
}

// More than one issuer (docs/identity.md): an issuer certificate a member hands another is
// taken only if a root of the mesh made it for an issuer.
TEST(CertsTest, AnIssuerCertificateIsTakenOnlyIfTheMeshsRootMadeIt) {
  Mesh mesh, other;
  EXPECT_TRUE(VerifyIssuerCertificate(mesh.issuer, {mesh.root}, Now()).ok());
  EXPECT_EQ(IssuerName(mesh.issuer), "first");
  const auto refusal = [&](const Certificate& c, const std::vector<Certificate>& roots,
                           WallTime at = Now()) {
    absl::Status s = VerifyIssuerCertificate(c, roots, at);
    return s.ok() ? std::string("taken") : std::string(s.message());
  };
  EXPECT_THAT(refusal(other.issuer, {mesh.root}), HasSubstr("no root of this mesh signed it"));
  EXPECT_THAT(refusal(mesh.root, {mesh.root}), HasSubstr("not an issuer"));
  EXPECT_THAT(refusal(mesh.Issue(NodeKey::Generate()), {mesh.root}), HasSubstr("not an issuer"));
  EXPECT_THAT(refusal(mesh.issuer, {mesh.root}, Now() + kIssuerValidity + std::chrono::hours(1)),
              HasSubstr("not valid now"));
  // A root rotation's cross certificate (the old root's of the new root's key) issues nothing.
  const NodeKey new_root_key = NodeKey::Generate();
  const Certificate new_root = MakeRootCertificate(new_root_key, mesh.id, Now());
  const Certificate cross = CrossSignRoot(new_root, mesh.root, mesh.root_key, Now());
  EXPECT_THAT(refusal(cross, {new_root, mesh.root, cross}), HasSubstr("not an issuer"));
  // An issuer the new root made is taken with the bundle of a rotation.
  const Certificate second = MakeIssuerCertificate(NodeKey::Generate().public_key(), "second",
                                                   new_root, new_root_key, Now());
  EXPECT_TRUE(VerifyIssuerCertificate(second, {new_root, mesh.root, cross}, Now()).ok());
  EXPECT_EQ(IssuerName(second), "second");
  EXPECT_EQ(IssuerName(mesh.root), "");
}

TEST(CertsTest, BadNamesLabelsAndKeysAreRefusedNamingTheField) {
  Mesh mesh;
  NodeIdentity who;
  who.public_key = NodeKey::Generate().public_key();
  const auto refusal = [&](NodeIdentity w) {
    absl::StatusOr<Certificate> c = IssueNodeCertificate(w, mesh.issuer, mesh.issuer_key, Now());
    return c.ok() ? std::string("accepted") : std::string(c.status().message());
  };
  who.name = "";
  EXPECT_THAT(refusal(who), HasSubstr("name"));
  who.name = "cam,URI:spiffe://evil";
  EXPECT_THAT(refusal(who), HasSubstr("name"));
  who.name = std::string(64, 'a');
  EXPECT_THAT(refusal(who), HasSubstr("name"));
  who.name = "-x";
  EXPECT_THAT(refusal(who), HasSubstr("starts with"));
  who.name = "cam-1";
  who.labels = {{"zone", "a=b"}};
  EXPECT_THAT(refusal(who), HasSubstr("label zone"));
  who.labels = {{"zo ne", "a"}};
  EXPECT_THAT(refusal(who), HasSubstr("label key"));
  who.labels = {};
  who.public_key = "short";
  EXPECT_THAT(refusal(who), HasSubstr("public key"));
  EXPECT_TRUE(ParseRole("operator").ok());
  EXPECT_THAT(ParseRole("root").status().message(), HasSubstr("node, operator or client"));
}

TEST(JoinTokenTest, RoundTripsAndRefusesMalformedTokens) {
  Mesh mesh;
  const JoinToken t = JoinToken::Generate(mesh.root.Digest());
  const std::string text = t.ToString();
  EXPECT_EQ(text.size(), 4 + 64 + 1 + 8 + 1 + 32u) << text;
  absl::StatusOr<JoinToken> back = JoinToken::Parse(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ca_digest, mesh.root.Digest());
  EXPECT_EQ(back->id, t.id);
  EXPECT_EQ(back->secret, t.secret);
  EXPECT_NE(JoinToken::Generate(mesh.root.Digest()).secret, t.secret);
  // Upper case is read as lower case.
  std::string upper = text;
  for (size_t i = 4; i < upper.size(); ++i) upper[i] = static_cast<char>(std::toupper(upper[i]));
  EXPECT_EQ(JoinToken::Parse(upper)->secret, t.secret);
  for (const std::string& bad :
       {std::string("SWMTKN-1-abc"), std::string("HM1-") + std::string(64, 'a'),
        std::string("HM1-") + std::string(63, 'a') + "-01234567." + std::string(32, 'b'),
        std::string("HM1-") + std::string(64, 'g') + "-01234567." + std::string(32, 'b'),
        std::string("HM1-") + std::string(64, 'a') + "-0123456." + std::string(32, 'b'),
        std::string("HM1-") + std::string(64, 'a') + "-01234567." + std::string(31, 'b'),
        std::string("HM1-") + std::string(64, 'a') + ".01234567-" + std::string(32, 'b')}) {
    absl::StatusOr<JoinToken> p = JoinToken::Parse(bad);
    EXPECT_FALSE(p.ok()) << bad;
    EXPECT_THAT(p.status().message(), HasSubstr("join token")) << bad;
  }
}

}  // namespace
}  // namespace hivemesh::identity
