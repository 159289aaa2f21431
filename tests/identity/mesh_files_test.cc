// The mesh's credentials in the state folder (identity/mesh_files.h).
#include "identity/mesh_files.h"

#include "identity/client_token.h"
#include "identity/issuer.h"
#include "identity/issuer_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace hivemesh::identity {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

WallTime T0() { return WallTime(std::chrono::seconds(1'800'000'000)); }

class MeshFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hivemesh-mesh-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/mesh/" + name) << text;
  }
  std::string dir_;
};

TEST_F(MeshFilesTest, ANewMeshIsSavedAndReadBackWhole) {
  absl::StatusOr<MeshCredentials> none = LoadMesh(dir_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  const NodeKey node_key = NodeKey::Generate();
  absl::StatusOr<MeshCredentials> mesh = CreateMesh(node_key, "gw-1", {{"zone", "a"}}, T0());
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  ASSERT_TRUE(SaveMesh(dir_, *mesh).ok());
  absl::StatusOr<MeshCredentials> back = LoadMesh(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_FALSE(back->empty());
  EXPECT_EQ(back->ca_digest(), mesh->ca_digest());
  ASSERT_TRUE(back->node_cert.has_value());
  absl::StatusOr<NodeIdentity> id =
      VerifyNodeCertificate(*back->node_cert, back->node_chain, back->roots, T0());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "gw-1");
  EXPECT_EQ(id->public_key, node_key.public_key());
  EXPECT_EQ(id->labels.at("zone"), "a");
  EXPECT_EQ(id->mesh_id, back->roots[0].MeshId());
  ASSERT_TRUE(back->issuer_cert && back->issuer_key && back->root_key);
  EXPECT_EQ(back->issuer_cert->public_key(), back->issuer_key->public_key());
  EXPECT_EQ(back->roots[0].public_key(), back->root_key->public_key());
  EXPECT_NE(back->root_key->public_key(), node_key.public_key()) << "each CA has its own key";
  // The mesh's gossip key: one AES-256 key in base64, kept like the other secrets.
  ASSERT_EQ(back->gossip_keys.size(), 1u);
  EXPECT_EQ(back->gossip_keys, mesh->gossip_keys);
  EXPECT_EQ(back->gossip_keys[0].size(), 44u);
  EXPECT_NE(CreateMesh(node_key, "gw-1", {}, T0())->gossip_keys, mesh->gossip_keys);
  for (const char* key : {"root.key", "issuer.key", "gossip.keys"}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir_ + "/mesh/" + key).c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
  }
  // Saving again replaces the files and leaves no temporary one.
  ASSERT_TRUE(SaveMesh(dir_, *back).ok());
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_ + "/mesh")) {
    const std::string ext = e.path().extension().string();
    EXPECT_TRUE(ext == ".key" || ext == ".keys" || ext == ".pem") << e.path();
    ++files;
  }
  EXPECT_EQ(files, 6);
  // A node without the root key (exported and removed) still loads.
  fs::remove(dir_ + "/mesh/root.key");
  EXPECT_FALSE(LoadMesh(dir_)->root_key.has_value());
}

TEST_F(MeshFilesTest, ARootRotationTrustsBothRootsBeforeTheIssuerSignsUnderTheNewOne) {
  const NodeKey node_key = NodeKey::Generate();
  MeshCredentials mesh = *CreateMesh(node_key, "gw-1", {}, T0());
  const Certificate old_root = mesh.roots[0];
  const Certificate old_cert = *mesh.node_cert;
  const Certificate old_issuer = *mesh.issuer_cert;
  EXPECT_FALSE(RootRotationPending(mesh));
  EXPECT_THAT(FinishRootRotation(mesh, T0()).message(), HasSubstr("no root rotation"));
  ASSERT_TRUE(StartRootRotation(mesh, T0()).ok());
  ASSERT_EQ(mesh.roots.size(), 3u);
  EXPECT_EQ(mesh.roots[1].Digest(), old_root.Digest());
  // Last, the old root's certificate of the new root's key.
  EXPECT_EQ(mesh.roots[2].public_key(), mesh.roots[0].public_key());
  EXPECT_TRUE(mesh.roots[2].SignedBy(old_root));
  EXPECT_FALSE(mesh.roots[2].SignedBy(mesh.roots[2]));
  EXPECT_EQ(mesh.roots[0].MeshId(), old_root.MeshId()) << "the same mesh";
  EXPECT_TRUE(RootRotationPending(mesh));
  EXPECT_THAT(StartRootRotation(mesh, T0()).message(), HasSubstr("under way"));
  // During the overlap, a certificate under the old root verifies against the bundle.
  EXPECT_TRUE(VerifyNodeCertificate(old_cert, mesh.node_chain, mesh.roots, T0()).ok());
  ASSERT_TRUE(FinishRootRotation(mesh, T0()).ok());
  EXPECT_FALSE(RootRotationPending(mesh));
  EXPECT_TRUE(mesh.issuer_cert->SignedBy(mesh.roots[0]));
  EXPECT_FALSE(mesh.issuer_cert->SignedBy(old_root));
  EXPECT_EQ(mesh.issuer_cert->public_key(), mesh.issuer_key->public_key()) << "the same key";
  // What the issuer signs now chains to the new root alone, renewing a certificate under the
  // old one included.
  Issuer issuer(*mesh.issuer_cert, *mesh.issuer_key, mesh.roots, "gw-1");
  absl::StatusOr<Issued> renewed =
      issuer.Renew(old_cert, {old_issuer}, node_key.public_key(), T0());
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_TRUE(VerifyNodeCertificate(renewed->cert, renewed->chain, {mesh.roots[0]}, T0()).ok());
  EXPECT_FALSE(VerifyNodeCertificate(renewed->cert, renewed->chain, {old_root}, T0()).ok());
  // A node that trusts only the old root checks it through what a peer sends with it: the
  // issuer's certificate and the bundle, whose self-signed new root cannot stand in the chain.
  std::vector<Certificate> sent = renewed->chain;
  sent.insert(sent.end(), mesh.roots.begin(), mesh.roots.end());
  EXPECT_TRUE(VerifyNodeCertificate(renewed->cert, sent, {old_root}, T0()).ok());
  std::vector<Certificate> without_cross = renewed->chain;
  without_cross.push_back(mesh.roots[0]);
  EXPECT_FALSE(VerifyNodeCertificate(renewed->cert, without_cross, {old_root}, T0()).ok());
}

TEST_F(MeshFilesTest, AGossipKeyRotationTakesThreeSignedVersionsAndIsKept) {
  MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  const std::vector<std::string> old_keys = mesh.gossip_keys;
  ASSERT_EQ(old_keys.size(), 1u);
  EXPECT_EQ(mesh.gossip_keys_version, 0u);
  EXPECT_THAT(AdvanceGossipKeyRotation(mesh).message(), HasSubstr("no gossip key rotation"));
  const auto signed_ok = [&](const MeshCredentials& m) {
    return VerifyGossipKeys(*m.issuer_cert, m.gossip_keys_version, m.gossip_keys,
                            m.gossip_keys_signature);
  };
  // 1: a new key is accepted; the old one still seals.
  ASSERT_TRUE(StartGossipKeyRotation(mesh).ok());
  ASSERT_EQ(mesh.gossip_keys.size(), 2u);
  EXPECT_EQ(mesh.gossip_keys[0], old_keys[0]);
  const std::string new_key = mesh.gossip_keys[1];
  EXPECT_NE(new_key, old_keys[0]);
  EXPECT_EQ(mesh.gossip_keys_version, 1u);
  EXPECT_EQ(mesh.gossip_rotation_step, 1);
  EXPECT_TRUE(signed_ok(mesh));
  EXPECT_THAT(StartGossipKeyRotation(mesh).message(), HasSubstr("under way"));
  // Kept across a restart, step included.
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  absl::StatusOr<MeshCredentials> back = LoadMesh(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->gossip_keys, mesh.gossip_keys);
  EXPECT_EQ(back->gossip_keys_version, 1u);
  EXPECT_EQ(back->gossip_keys_signature, mesh.gossip_keys_signature);
  EXPECT_EQ(back->gossip_rotation_step, 1);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/mesh/gossip.keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // 2: the new key seals, the old one is still accepted.
  mesh = *back;
  ASSERT_TRUE(AdvanceGossipKeyRotation(mesh).ok());
  EXPECT_EQ(mesh.gossip_keys, (std::vector<std::string>{new_key, old_keys[0]}));
  EXPECT_EQ(mesh.gossip_keys_version, 2u);
  EXPECT_TRUE(signed_ok(mesh));
  // 3: the old key goes.
  ASSERT_TRUE(AdvanceGossipKeyRotation(mesh).ok());
  EXPECT_EQ(mesh.gossip_keys, (std::vector<std::string>{new_key}));
  EXPECT_EQ(mesh.gossip_keys_version, 3u);
  EXPECT_EQ(mesh.gossip_rotation_step, 0);
  EXPECT_TRUE(signed_ok(mesh));
  EXPECT_THAT(AdvanceGossipKeyRotation(mesh).message(), HasSubstr("no gossip key rotation"));
  // A signature holds for its version and keys only, and only an issuer's counts.
  EXPECT_FALSE(
      VerifyGossipKeys(*mesh.issuer_cert, 4, mesh.gossip_keys, mesh.gossip_keys_signature));
  EXPECT_FALSE(VerifyGossipKeys(*mesh.issuer_cert, 3, old_keys, mesh.gossip_keys_signature));
  EXPECT_FALSE(VerifyGossipKeys(*mesh.node_cert, 3, mesh.gossip_keys, mesh.gossip_keys_signature));
  // Without issuer rights, no rotation.
  MeshCredentials member = mesh;
  member.issuer_key.reset();
  EXPECT_THAT(StartGossipKeyRotation(member).message(), HasSubstr("no issuer rights"));
}

TEST_F(MeshFilesTest, AnExportedRootKeyLeavesTheStateFolder) {
  MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  ASSERT_TRUE(fs::exists(dir_ + "/mesh/root.key"));
  mesh.root_key.reset();
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  EXPECT_FALSE(fs::exists(dir_ + "/mesh/root.key"));
  absl::StatusOr<MeshCredentials> back = LoadMesh(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->root_key.has_value());
  EXPECT_TRUE(back->issuer_key.has_value()) << "the issuer keeps issuing";
  EXPECT_THAT(StartRootRotation(*back, T0()).message(), HasSubstr("import-key"));
  // Saved again without it (a renewal): still nothing there, and no error.
  EXPECT_TRUE(SaveMesh(dir_, *back).ok());
  EXPECT_FALSE(fs::exists(dir_ + "/mesh/root.key"));
}

TEST_F(MeshFilesTest, AGossipKeysFileOfBeforeRotationIsVersionZero) {
  MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  Write("gossip.keys", mesh.gossip_keys[0] + "\n");
  ::chmod((dir_ + "/mesh/gossip.keys").c_str(), 0600);
  absl::StatusOr<MeshCredentials> back = LoadMesh(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->gossip_keys, mesh.gossip_keys);
  EXPECT_EQ(back->gossip_keys_version, 0u);
  EXPECT_EQ(back->gossip_rotation_step, 0);
  for (const std::string bad : {"version x\n", "step 3\n", "signature zz\n", "what 1\n"}) {
    Write("gossip.keys", bad + mesh.gossip_keys[0] + "\n");
    absl::StatusOr<MeshCredentials> refused = LoadMesh(dir_);
    EXPECT_FALSE(refused.ok()) << bad;
    EXPECT_THAT(refused.status().message(), HasSubstr("gossip.keys")) << bad;
  }
}

TEST_F(MeshFilesTest, DamagedOrUnsafeFilesAreRefusedNamingTheFile) {
  ASSERT_TRUE(SaveMesh(dir_, *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0())).ok());
  ::chmod((dir_ + "/mesh/issuer.key").c_str(), 0644);
  EXPECT_THAT(LoadMesh(dir_).status().message(), HasSubstr("issuer key"));
  EXPECT_THAT(LoadMesh(dir_).status().message(), HasSubstr("chmod 600"));
  ::chmod((dir_ + "/mesh/issuer.key").c_str(), 0600);
  ::chmod((dir_ + "/mesh/gossip.keys").c_str(), 0640);
  EXPECT_THAT(LoadMesh(dir_).status().message(), HasSubstr("gossip keys"));
  ::chmod((dir_ + "/mesh/gossip.keys").c_str(), 0600);
  Write("node.pem", "not a certificate");
  EXPECT_THAT(LoadMesh(dir_).status().message(), HasSubstr("node.pem"));
  fs::remove(dir_ + "/mesh/roots.pem");
  EXPECT_THAT(LoadMesh(dir_).status().message(), HasSubstr("roots.pem is not"));
  EXPECT_THAT(CreateMesh(NodeKey::Generate(), "bad name", {}, T0()).status().message(),
              HasSubstr("name"));
}

TEST_F(MeshFilesTest, TokensAreKeptAcrossRestartsWithoutTheirSecrets) {
  const MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  std::string secret, id;
  {
    absl::StatusOr<std::unique_ptr<IssuerService>> service =
        IssuerService::Open(dir_, mesh, "gw-1");
    ASSERT_TRUE(service.ok()) << service.status();
    absl::StatusOr<JoinToken> t = (*service)->CreateToken(Role::kOperator, seconds(3600), 2, T0());
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->ca_digest, mesh.ca_digest());
    secret = t->secret;
    id = t->id;
    EXPECT_FALSE((*service)->CreateToken(Role::kNode, seconds(0), 0, T0()).ok());
    EXPECT_FALSE((*service)->CreateToken(Role::kNode, seconds(60), -1, T0()).ok());
  }
  std::ifstream in(dir_ + "/mesh/tokens");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find(secret), std::string::npos) << text;
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/mesh/tokens").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<std::unique_ptr<IssuerService>> again = IssuerService::Open(dir_, mesh, "gw-1");
  ASSERT_TRUE(again.ok()) << again.status();
  std::vector<TokenRecord> tokens = (*again)->Tokens(T0());
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].id, id);
  EXPECT_EQ(tokens[0].role, Role::kOperator);
  EXPECT_EQ(tokens[0].uses, 2);
  EXPECT_EQ(tokens[0].expires, T0() + seconds(3600));
  ASSERT_TRUE((*again)->RevokeToken(id).ok());
  EXPECT_TRUE((*IssuerService::Open(dir_, mesh, "gw-1"))->Tokens(T0())[0].revoked);
  // A damaged file is refused naming it and the line.
  Write("tokens", text + "v1 short\n");
  EXPECT_THAT(IssuerService::Open(dir_, mesh, "gw-1").status().message(), HasSubstr("line 2"));
  // Without issuer rights there is no service.
  MeshCredentials plain = mesh;
  plain.issuer_key.reset();
  EXPECT_FALSE(IssuerService::Open(dir_, plain, "gw-1").ok());
}

TEST_F(MeshFilesTest, RevokedKeysAreKeptAndRefusedRenewalAndJoins) {
  const MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  const NodeKey doomed = NodeKey::Generate();
  JoinRequest request;
  request.name = "cam-9";
  request.public_key = doomed.public_key();
  const Issuer::KeyOf free = [](std::string_view) { return std::nullopt; };
  Certificate cert = mesh.roots[0];
  {
    std::unique_ptr<IssuerService> service = *IssuerService::Open(dir_, mesh, "gw-1");
    const JoinToken t = *service->CreateToken(Role::kNode, seconds(3600), 0, T0());
    request.token_id = t.id;
    request.token_secret = t.secret;
    absl::StatusOr<Issued> issued = service->Join(request, T0(), free);
    ASSERT_TRUE(issued.ok()) << issued.status();
    cert = issued->cert;
    ASSERT_TRUE(service->RevokeNode("cam-9", doomed.public_key(), T0()).ok());
    EXPECT_FALSE(service->RevokeNode("cam-9", "short", T0()).ok());
  }
  std::unique_ptr<IssuerService> again = *IssuerService::Open(dir_, mesh, "gw-1");
  ASSERT_EQ(again->Revocations().size(), 1u);
  EXPECT_EQ(again->Revocations()[0].name, "cam-9");
  EXPECT_EQ(again->Revocations()[0].when, T0());
  EXPECT_THAT(again->Renew(cert, {*mesh.issuer_cert}, doomed.public_key(), T0()).status().message(),
              HasSubstr("revoked"));
  EXPECT_THAT(again->Join(request, T0(), free).status().message(), HasSubstr("revoked"));
  Write("revoked", "v1 nothex cam-9 1\n");
  EXPECT_THAT(IssuerService::Open(dir_, mesh, "gw-1").status().message(), HasSubstr("line 1"));
}

TEST_F(MeshFilesTest, AClientsBearerTokensAreRevokedAsOfNowAndKept) {
  const MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  {
    std::unique_ptr<IssuerService> service = *IssuerService::Open(dir_, mesh, "gw-1");
    EXPECT_EQ(service->ClientTokensRevokedBefore("dash"), 0);
    absl::StatusOr<std::pair<std::string, std::string>> revoked =
        service->RevokeClientTokens("dash", T0());
    ASSERT_TRUE(revoked.ok()) << revoked.status();
    EXPECT_EQ(revoked->first, "tokens:dash@1800000000");
    EXPECT_EQ(revoked->second, ClientTokensKey(revoked->first));
    EXPECT_FALSE(service->RevokeClientTokens("not a name", T0()).ok());
    // Signed and spread like a key's revocation.
    ASSERT_EQ(service->SignedRevocations().size(), 1u);
    EXPECT_TRUE(VerifyRevocation(*mesh.issuer_cert, revoked->second, revoked->first,
                                 service->SignedRevocations()[0].signature));
  }
  std::unique_ptr<IssuerService> again = *IssuerService::Open(dir_, mesh, "gw-1");
  EXPECT_EQ(again->ClientTokensRevokedBefore("dash"), 1'800'000'000);
  EXPECT_EQ(again->ClientTokensRevokedBefore("dashboard"), 0);
  ASSERT_TRUE(again->RevokeClientTokens("dash", T0() + seconds(60)).ok());
  EXPECT_EQ(again->ClientTokensRevokedBefore("dash"), 1'800'000'060);
}

// More than one issuer (docs/identity.md): the other issuers' certificates and a granted
// issuer's mark are kept; only certificates the roots made for issuers are taken.
TEST_F(MeshFilesTest, OtherIssuersAreKeptAndOnlyTheRootsIssuersAreTaken) {
  MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  EXPECT_EQ(MeshIssuers(mesh).size(), 1u) << "the node's issuer is its own issuer: counted once";
  const Certificate second = MakeIssuerCertificate(NodeKey::Generate().public_key(), "gw-2",
                                                   mesh.roots[0], *mesh.root_key, T0());
  const MeshCredentials stranger = *CreateMesh(NodeKey::Generate(), "evil", {}, T0());
  const Certificate node = *mesh.node_cert;
  EXPECT_EQ(
      TakeIssuers(mesh, {second, second, *stranger.issuer_cert, node, *mesh.issuer_cert}, T0()),
      1u);
  ASSERT_EQ(MeshIssuers(mesh).size(), 2u);
  EXPECT_EQ(IssuerName(MeshIssuers(mesh)[1]), "gw-2");
  EXPECT_EQ(TakeIssuers(mesh, {second}, T0()), 0u) << "known already";
  // The same issuer key certified anew (as a root rotation does) is the same issuer.
  const Certificate again = MakeIssuerCertificate(second.public_key(), "gw-2", mesh.roots[0],
                                                  *mesh.root_key, T0() + seconds(60));
  EXPECT_EQ(TakeIssuers(mesh, {again}, T0() + seconds(120)), 0u);
  // At most kMaxIssuers.
  std::vector<Certificate> many;
  for (size_t i = 0; i < kMaxIssuers + 5; ++i) {
    many.push_back(MakeIssuerCertificate(NodeKey::Generate().public_key(), "gw-x", mesh.roots[0],
                                         *mesh.root_key, T0()));
  }
  TakeIssuers(mesh, many, T0());
  EXPECT_EQ(mesh.issuers.size(), kMaxIssuers);
  mesh.issuers.erase(mesh.issuers.begin() + 1, mesh.issuers.end());
  mesh.granted_issuer = true;
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  absl::StatusOr<MeshCredentials> back = LoadMesh(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->issuers.size(), 1u);
  EXPECT_EQ(back->issuers[0].Digest(), second.Digest());
  EXPECT_TRUE(back->granted_issuer);
}

// Tokens spread between issuers: learnt ones are kept, merged and bounded; issuer tokens only
// where the root key is.
TEST_F(MeshFilesTest, TokensLearntFromAnotherIssuerAreKeptAndMerged) {
  MeshCredentials mesh = *CreateMesh(NodeKey::Generate(), "gw-1", {}, T0());
  ASSERT_TRUE(SaveMesh(dir_, mesh).ok());
  std::unique_ptr<IssuerService> here = *IssuerService::Open(dir_, mesh, "gw-1");
  ASSERT_TRUE(here->CreateToken(Role::kNode, seconds(3600), 1, T0(), /*issuer=*/true).ok());
  MeshCredentials granted = mesh;
  granted.root_key.reset();
  std::string other_dir = dir_ + "/other";
  fs::create_directories(other_dir + "/mesh");
  std::unique_ptr<IssuerService> there = *IssuerService::Open(other_dir, granted, "gw-2");
  EXPECT_THAT(
      there->CreateToken(Role::kNode, seconds(3600), 1, T0(), /*issuer=*/true).status().message(),
      HasSubstr("root key"));
  std::vector<TokenRecord> records = here->Tokens(T0());
  ASSERT_TRUE(there->LearnTokens(records, T0()).ok());
  ASSERT_EQ(there->Tokens(T0()).size(), 1u);
  EXPECT_TRUE(there->Tokens(T0())[0].issuer);
  // Used there: handed back, the count merges here; a token that expired is not taken.
  records[0].used = 1;
  TokenRecord old = records[0];
  old.id = "0000beef";
  old.expires = T0() - seconds(1);
  ASSERT_TRUE(here->LearnTokens({records[0], old}, T0()).ok());
  ASSERT_EQ(here->Tokens(T0()).size(), 1u);
  EXPECT_EQ(here->Tokens(T0())[0].used, 1);
  // Kept across a restart.
  EXPECT_EQ((*IssuerService::Open(other_dir, granted, "gw-2"))->Tokens(T0()).size(), 1u);
  // Bounded: no more than kMaxTokens are kept.
  std::vector<TokenRecord> flood;
  for (size_t i = 0; i < kMaxTokens + 10; ++i) {
    TokenRecord r = records[0];
    char id[9];
    std::snprintf(id, sizeof(id), "%08zx", i + 1);
    r.id = id;
    flood.push_back(r);
  }
  ASSERT_TRUE(there->LearnTokens(flood, T0()).ok());
  EXPECT_EQ(there->Tokens(T0()).size(), kMaxTokens);
  // A revocation another issuer made is adopted once.
  const std::string key = NodeKey::Generate().public_key();
  ASSERT_TRUE(there->Adopt("cam-1", key, T0()).ok());
  ASSERT_TRUE(there->Adopt("cam-1", key, T0()).ok());
  EXPECT_TRUE(there->IsRevoked(key));
  EXPECT_EQ(there->revocation_count(), 1u);
  EXPECT_FALSE(there->Adopt("cam-1", "short", T0()).ok());
}

TEST(TokenFileTest, RoundTripsAndRefusesBadLines) {
  TokenRecord t;
  t.id = "0123abcd";
  t.role = Role::kNode;
  t.secret_sha256 = std::string(64, 'e');
  t.created = T0();
  t.expires = T0() + seconds(60);
  t.uses = 5;
  t.used = 2;
  t.revoked = true;
  t.created_by = "gw-1";
  TokenRecord issuer = t;
  issuer.issuer = true;
  absl::StatusOr<std::vector<TokenRecord>> back = ParseTokens(FormatTokens({t, t, issuer}));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 3u);
  EXPECT_FALSE((*back)[1].issuer);
  EXPECT_TRUE((*back)[2].issuer) << FormatTokens({issuer});
  EXPECT_EQ((*back)[2].role, Role::kNode);
  EXPECT_EQ((*back)[1].id, t.id);
  EXPECT_EQ((*back)[1].expires, t.expires);
  EXPECT_EQ((*back)[1].used, 2);
  EXPECT_TRUE((*back)[1].revoked);
  const std::string line = FormatTokens({t});
  for (const std::string& bad :
       {std::string("v2") + line.substr(2), line.substr(0, line.size() - 6) + "\n",
        std::string("v1 0123abcd root ") + line.substr(17),
        std::string("v1 0123 node ") + line.substr(17),
        // Times past what a clock holds (the fuzzer's find: they overflowed in nanoseconds),
        // a hash that is not hex, negative counts, a maker that is no node name.
        std::string("v1 0123abcd node ") + std::string(64, 'e') + " 180008010000 1 5 2 0 gw-1\n",
        std::string("v1 0123abcd node ") + std::string(64, 'e') + " 1 99999999999999 5 2 0 gw\n",
        std::string("v1 0123abcd node ") + std::string(63, 'e') + "z 1 2 5 2 0 gw-1\n",
        std::string("v1 0123abcd node ") + std::string(64, 'e') + " 1 2 -5 2 0 gw-1\n",
        std::string("v1 0123abcd node ") + std::string(64, 'e') + " 1 2 5 -2 0 gw-1\n",
        std::string("v1 0123abcd node ") + std::string(64, 'e') + " 1 2 5 2 0 gw/1\n"}) {
    EXPECT_FALSE(ParseTokens(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace hivemesh::identity
