#include "identity/node_key.h"

#include <gtest/gtest.h>

namespace hivemesh::identity {
namespace {

TEST(NodeKeyTest, SignsAndVerifies) {
  const NodeKey key = NodeKey::Generate();
  EXPECT_EQ(key.public_key().size(), kPublicKeyBytes);
  const std::string sig = key.Sign("hello");
  EXPECT_EQ(sig.size(), kSignatureBytes);
  EXPECT_TRUE(VerifySignature(key.public_key(), "hello", sig));
  EXPECT_FALSE(VerifySignature(key.public_key(), "hellO", sig));
  EXPECT_FALSE(VerifySignature(NodeKey::Generate().public_key(), "hello", sig));
  std::string bad = sig;
  bad[10] ^= 1;
  EXPECT_FALSE(VerifySignature(key.public_key(), "hello", bad));
  // Wrong sizes are simply false.
  EXPECT_FALSE(VerifySignature("", "hello", sig));
  EXPECT_FALSE(VerifySignature(key.public_key(), "hello", sig.substr(1)));
  EXPECT_FALSE(VerifySignature(key.public_key() + "x", "hello", sig));
}

TEST(NodeKeyTest, ACachedVerificationIsStillTiedToKeyMessageAndSignature) {
  const NodeKey a = NodeKey::Generate();
  const NodeKey b = NodeKey::Generate();
  const std::string sig = a.Sign("m");
  EXPECT_TRUE(VerifySignature(a.public_key(), "m", sig));
  EXPECT_TRUE(VerifySignature(a.public_key(), "m", sig));  // from the cache
  EXPECT_FALSE(VerifySignature(b.public_key(), "m", sig));
  EXPECT_FALSE(VerifySignature(a.public_key(), "m2", sig));
}

TEST(NodeKeyTest, PemRoundTripKeepsTheKey) {
  const NodeKey key = NodeKey::Generate();
  absl::StatusOr<NodeKey> back = NodeKey::FromPem(key.ToPem());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->public_key(), key.public_key());
  EXPECT_TRUE(VerifySignature(key.public_key(), "x", back->Sign("x")));
  EXPECT_FALSE(NodeKey::FromPem("not a key").ok());
  EXPECT_FALSE(NodeKey::FromPem("").ok());
}

TEST(NodeKeyTest, TheSameSeedGivesTheSameKey) {
  const std::string seed(32, '\x07');
  EXPECT_EQ(NodeKey::FromSeed(seed).public_key(), NodeKey::FromSeed(seed).public_key());
  EXPECT_NE(NodeKey::FromSeed(seed).public_key(),
            NodeKey::FromSeed(std::string(32, '\x08')).public_key());
}

TEST(NodeKeyTest, FingerprintsAreShortAndStable) {
  const NodeKey key = NodeKey::FromSeed(std::string(32, '\x01'));
  EXPECT_EQ(KeyFingerprint(key.public_key()).size(), 16u);
  EXPECT_EQ(KeyFingerprint(key.public_key()), KeyFingerprint(key.public_key()));
  EXPECT_EQ(KeyFingerprint(""), "-");
}

}  // namespace
}  // namespace hivemesh::identity
