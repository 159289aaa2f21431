// PeerVerifier (identity/peer_verifier.h): chains verified once and remembered while valid, with
// the time passed in.
#include "identity/peer_verifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "identity/mesh_files.h"

namespace hivemesh::identity {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;

WallTime T0() { return WallTime(seconds(1'800'000'000)); }

struct Mesh {
  Mesh() : founder(*CreateMesh(founder_key, "founder", {}, T0())) {}
  // A member's certificate chain as it is sent: its own certificate, then its issuer's (DER).
  std::vector<std::string> Member(const std::string& name, seconds life = seconds(3600)) const {
    NodeIdentity who;
    who.name = name;
    who.public_key = NodeKey::Generate().public_key();
    const Certificate cert =
        *IssueNodeCertificate(who, *founder.issuer_cert, *founder.issuer_key, T0(), life);
    return {cert.Der(), founder.issuer_cert->Der()};
  }
  NodeKey founder_key = NodeKey::Generate();
  MeshCredentials founder;
};

TEST(PeerVerifierTest, AChainIsVerifiedOnceAndRememberedWhileValid) {
  Mesh mesh;
  PeerVerifier verifier;
  const std::vector<std::string> chain = mesh.Member("cam-1");
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<NodeIdentity> who = verifier.Verify(chain, {}, mesh.founder.roots, T0());
    ASSERT_TRUE(who.ok()) << who.status();
    EXPECT_EQ(who->name, "cam-1");
  }
  EXPECT_EQ(verifier.verifications(), 1u);
  // Only its own certificate (a resumed session), with the issuer the verifier knows.
  PeerVerifier other;
  EXPECT_TRUE(other.Verify({chain[0]}, {*mesh.founder.issuer_cert}, mesh.founder.roots, T0()).ok());
  EXPECT_FALSE(other.Verify({mesh.Member("cam-2")[0]}, {}, mesh.founder.roots, T0()).ok())
      << "no issuer: no chain";
}

TEST(PeerVerifierTest, PastItsEndARememberedCertificateIsVerifiedAgainAndRefused) {
  Mesh mesh;
  PeerVerifier verifier;
  const std::vector<std::string> chain = mesh.Member("cam-1", seconds(60));
  ASSERT_TRUE(verifier.Verify(chain, {}, mesh.founder.roots, T0()).ok());
  ASSERT_TRUE(verifier.Verify(chain, {}, mesh.founder.roots, T0() + seconds(59)).ok());
  EXPECT_EQ(verifier.verifications(), 1u);
  absl::StatusOr<NodeIdentity> late =
      verifier.Verify(chain, {}, mesh.founder.roots, T0() + seconds(61));
  ASSERT_FALSE(late.ok());
  EXPECT_THAT(late.status().message(), HasSubstr("expired"));
  EXPECT_EQ(verifier.verifications(), 2u);
  // Ten minutes at most, even for a long certificate.
  const std::vector<std::string> long_lived = mesh.Member("cam-2", seconds(86400));
  ASSERT_TRUE(verifier.Verify(long_lived, {}, mesh.founder.roots, T0()).ok());
  ASSERT_TRUE(verifier.Verify(long_lived, {}, mesh.founder.roots, T0() + seconds(601)).ok());
  EXPECT_EQ(verifier.verifications(), 4u);
}

TEST(PeerVerifierTest, FailuresAreNotRememberedAndClearForgets) {
  Mesh mesh, other;
  PeerVerifier verifier;
  const std::vector<std::string> stranger = other.Member("cam-1");
  EXPECT_FALSE(verifier.Verify(stranger, {}, mesh.founder.roots, T0()).ok());
  EXPECT_FALSE(verifier.Verify(stranger, {}, mesh.founder.roots, T0()).ok());
  EXPECT_EQ(verifier.verifications(), 2u);
  EXPECT_THAT(
      verifier.Verify({"not a certificate"}, {}, mesh.founder.roots, T0()).status().message(),
      HasSubstr("does not parse"));
  EXPECT_THAT(verifier.Verify({}, {}, mesh.founder.roots, T0()).status().message(),
              HasSubstr("no certificate"));
  const std::vector<std::string> chain = mesh.Member("cam-1");
  ASSERT_TRUE(verifier.Verify(chain, {}, mesh.founder.roots, T0()).ok());
  verifier.Clear();
  // Remembered no more: checked against the roots given now, which no longer hold its CA.
  EXPECT_FALSE(verifier.Verify(chain, {}, other.founder.roots, T0()).ok());
}

TEST(PeerVerifierTest, MemoryIsBounded) {
  Mesh mesh;
  PeerVerifier verifier(/*capacity=*/2);
  const std::vector<std::string> a = mesh.Member("a"), b = mesh.Member("b"), c = mesh.Member("c");
  for (const auto* chain : {&a, &b, &c, &a}) {
    ASSERT_TRUE(verifier.Verify(*chain, {}, mesh.founder.roots, T0()).ok());
  }
  // a, b remembered; c started the memory over; a was verified again.
  EXPECT_EQ(verifier.verifications(), 4u);
}

}  // namespace
}  // namespace hivemesh::identity
