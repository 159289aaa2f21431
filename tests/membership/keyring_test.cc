#include "membership/keyring.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace hivemesh::membership {
namespace {

std::string FromHex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::string Key(size_t size, char fill) { return std::string(size, fill); }

Keyring Ring(std::vector<std::string> keys, std::string label = "cluster-a") {
  absl::StatusOr<Keyring> ring = Keyring::Create(std::move(keys), std::move(label));
  EXPECT_TRUE(ring.ok()) << ring.status();
  return *ring;
}

std::string_view Message(const absl::Status& s) {
  return std::string_view(s.message().data(), s.message().size());
}

bool Contains(const absl::Status& s, std::string_view part) {
  return Message(s).find(part) != std::string_view::npos;
}

TEST(KeyringTest, RoundTripForEachKeySize) {
  for (size_t size : {16u, 24u, 32u}) {
    SCOPED_TRACE(size);
    const Keyring ring = Ring({Key(size, 'k')});
    for (const std::string& plaintext :
         {std::string(), std::string("ping"), std::string(70000, '\x5a')}) {
      const std::string packet = ring.Seal(plaintext);
      ASSERT_EQ(packet.size(), plaintext.size() + Keyring::kOverhead);
      EXPECT_EQ(packet[0], Keyring::kVersion);
      if (!plaintext.empty()) {
        EXPECT_EQ(packet.find(plaintext), std::string::npos);  // not sent in the clear
      }
      absl::StatusOr<std::string> opened = ring.Open(packet);
      ASSERT_TRUE(opened.ok()) << opened.status();
      EXPECT_EQ(*opened, plaintext);
    }
  }
}

TEST(KeyringTest, NoncesAreFresh) {
  const Keyring ring = Ring({Key(32, 'k')});
  std::set<std::string> nonces;
  std::set<std::string> packets;
  for (int i = 0; i < 100; ++i) {
    const std::string packet = ring.Seal("same plaintext");
    nonces.insert(packet.substr(1, Keyring::kNonceBytes));
    packets.insert(packet);
  }
  EXPECT_EQ(nonces.size(), 100u);
  EXPECT_EQ(packets.size(), 100u);
}

// The packet layout is memberlist's encryption version 1 over standard AES-GCM: packets built by
// hand from the GCM specification's test vectors (McGrew & Viega, test cases 4, 10 and 16; the
// label is the additional data) open to the specified plaintext.
TEST(KeyringTest, OpensGcmSpecTestVectors) {
  const std::string iv = FromHex("cafebabefacedbaddecaf888");
  const std::string aad = FromHex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const std::string plaintext = FromHex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
      "49a6b525b16aedf5aa0de657ba637b39");
  struct Vector {
    std::string key, ciphertext, tag;
  };
  const std::vector<Vector> vectors = {
      {"feffe9928665731c6d6a8f9467308308",
       "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5a"
       "ac84aa051ba30b396a0aac973d58e091",
       "5bc94fbc3221a5db94fae95ae7121a47"},
      {"feffe9928665731c6d6a8f9467308308feffe9928665731c",
       "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c7d773d00c144c525ac619d18"
       "c84a3f4718e2448b2fe324d9ccda2710",
       "2519498e80f1478f37ba55bd6d27618c"},
      {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
       "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10"
       "56828838c5f61e6393ba7a0abcc9f662",
       "76fc6ece0f4e1768cddf8853bb2d551b"},
  };
  for (const Vector& v : vectors) {
    SCOPED_TRACE(v.key);
    const Keyring ring = Ring({FromHex(v.key)}, aad);
    const std::string packet = std::string(1, '\x01') + iv + FromHex(v.ciphertext) + FromHex(v.tag);
    absl::StatusOr<std::string> opened = ring.Open(packet);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plaintext);
    // The same key without the label (additional data) does not authenticate it.
    EXPECT_FALSE(Ring({FromHex(v.key)}, "").Open(packet).ok());
  }
}

TEST(KeyringTest, RotationPrimaryEncryptsEveryKeyDecrypts) {
  const std::string old_key = Key(32, 'o');
  const std::string new_key = Key(16, 'n');
  const Keyring old_ring = Ring({old_key});
  const Keyring rotating = Ring({new_key, old_key});
  const Keyring new_only = Ring({new_key});

  // Step 1 of a rotation: nodes still sealing with the old primary are understood by nodes
  // that already seal with the new one.
  const std::string from_old = old_ring.Seal("from an old node");
  absl::StatusOr<std::string> opened = rotating.Open(from_old);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "from an old node");
  // Once the old key is removed, its packets are rejected.
  absl::StatusOr<std::string> rejected = new_only.Open(from_old);
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kUnauthenticated);

  // The rotating ring seals with its first key only.
  const std::string from_rotating = rotating.Seal("from a rotated node");
  EXPECT_TRUE(new_only.Open(from_rotating).ok());
  EXPECT_FALSE(old_ring.Open(from_rotating).ok());
  EXPECT_EQ(rotating.key_count(), 2u);
}

TEST(KeyringTest, WrongKeyOrLabelIsRejected) {
  const Keyring a = Ring({Key(32, 'a')}, "cluster-a");
  const std::string packet = a.Seal("hello");
  const absl::Status wrong_key = Ring({Key(32, 'b')}, "cluster-a").Open(packet).status();
  EXPECT_EQ(wrong_key.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(Contains(wrong_key, "wrong key or label")) << wrong_key;
  // Same key, another cluster: kept apart by the label.
  EXPECT_EQ(Ring({Key(32, 'a')}, "cluster-b").Open(packet).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Ring({Key(32, 'a')}, "").Open(packet).status().code(),
            absl::StatusCode::kUnauthenticated);
  // Same key bytes used as a different key size do not alias.
  EXPECT_FALSE(Ring({Key(16, 'a')}, "cluster-a").Open(packet).ok());
}

TEST(KeyringTest, EveryFlippedBitIsRejected) {
  const Keyring ring = Ring({Key(24, 'k')});
  const std::string packet = ring.Seal("payload!");
  for (size_t byte = 0; byte < packet.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string tampered = packet;
      tampered[byte] = static_cast<char>(tampered[byte] ^ (1 << bit));
      const absl::Status status = ring.Open(tampered).status();
      ASSERT_FALSE(status.ok()) << "byte " << byte << " bit " << bit;
      // The version byte is checked first; nonce, ciphertext and tag by authentication.
      EXPECT_EQ(status.code(),
                byte == 0 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kUnauthenticated)
          << "byte " << byte;
    }
  }
}

TEST(KeyringTest, TruncatedAndEmptyPacketsAreRejected) {
  const Keyring ring = Ring({Key(16, 'k')});
  const std::string packet = ring.Seal("some plaintext");
  for (size_t n = 0; n < packet.size(); ++n) {
    const absl::Status status = ring.Open(std::string_view(packet).substr(0, n)).status();
    ASSERT_FALSE(status.ok()) << n;
    EXPECT_EQ(status.code(), n < Keyring::kOverhead ? absl::StatusCode::kInvalidArgument
                                                    : absl::StatusCode::kUnauthenticated)
        << n;
  }
  // Trailing bytes are rejected too (they shift the tag).
  EXPECT_FALSE(ring.Open(packet + "x").ok());

  const absl::Status empty = ring.Open("").status();
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(empty, "0 bytes is shorter than the 29-byte")) << empty;
}

TEST(KeyringTest, UnknownVersionIsRejected) {
  const Keyring ring = Ring({Key(16, 'k')});
  std::string packet = ring.Seal("x");
  packet[0] = 2;
  const absl::Status status = ring.Open(packet).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status, "unknown encryption version 2")) << status;
}

TEST(KeyringTest, CreateValidatesKeys) {
  const absl::Status none = Keyring::Create({}, "l").status();
  EXPECT_EQ(none.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(none, "at least one key")) << none;

  const absl::Status bad =
      Keyring::Create({Key(16, 'a'), Key(32, 'b'), Key(20, 'c')}, "l").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(bad, "key 2 is 20 bytes")) << bad;
  EXPECT_TRUE(Contains(bad, "16, 24 or 32")) << bad;
  EXPECT_FALSE(Contains(bad, "ccc")) << "key bytes must not leak into errors";

  EXPECT_TRUE(Contains(Keyring::Create({""}, "l").status(), "key 0 is 0 bytes"));
  EXPECT_FALSE(Keyring::Create({Key(16, 'a')}, std::string(256, 'l')).ok());
  EXPECT_TRUE(Keyring::Create({Key(16, 'a')}, std::string(255, 'l')).ok());

  // Duplicates collapse; the primary stays first.
  const Keyring ring = Ring({Key(16, 'a'), Key(32, 'b'), Key(16, 'a')});
  EXPECT_EQ(ring.key_count(), 2u);
  EXPECT_TRUE(Ring({Key(16, 'a')}).Open(ring.Seal("p")).ok());
}

TEST(KeyringTest, CopiesAreIndependentValues) {
  std::string packet;
  std::optional<Keyring> copy;
  {
    const Keyring original = Ring({Key(32, 'k')});
    packet = original.Seal("survives");
    copy = original;
  }
  absl::StatusOr<std::string> opened = copy->Open(packet);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "survives");
  EXPECT_EQ(copy->label(), "cluster-a");
}

TEST(KeyringTest, DecodeKeyAcceptsStandardBase64OfValidSizes) {
  // base64 of 16, 24 and 32 bytes 0x00..0x1f.
  absl::StatusOr<std::string> k16 = Keyring::DecodeKey("AAECAwQFBgcICQoLDA0ODw==");
  ASSERT_TRUE(k16.ok()) << k16.status();
  EXPECT_EQ(*k16, FromHex("000102030405060708090a0b0c0d0e0f"));
  absl::StatusOr<std::string> k24 = Keyring::DecodeKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYX");
  ASSERT_TRUE(k24.ok()) << k24.status();
  EXPECT_EQ(k24->size(), 24u);
  absl::StatusOr<std::string> k32 = Keyring::DecodeKey(
      "  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n");  // as read from a file
  ASSERT_TRUE(k32.ok()) << k32.status();
  EXPECT_EQ(*k32, FromHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"));
  EXPECT_TRUE(Keyring::Create({*k16, *k24, *k32}, "l").ok());
}

TEST(KeyringTest, DecodeKeyExplainsBadInput) {
  struct Case {
    std::string input, expected;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"   \n", "empty"},
      {"AAECAwQFBgcICQoLDA0ODxAREhM=", "decodes to 20 bytes"},  // 20 bytes
      {"AAEC", "decodes to 3 bytes"},
      {"AAECAwQFBgcICQoLDA0ODw", "not a multiple of 4"},  // padding missing
      {"AAECAwQFBgcI*QoLDA0ODw==", "unexpected character at position 12"},
      {"AAECAwQFBgcI-QoLDA0ODw==", "URL-safe"},
      {"AAECAwQF=gcICQoLDA0ODw==", "position 8"},  // '=' inside
      {"AAECAwQFBgcICQoLDA0OD===", "position 21"},
      {std::string(400, 'A'), "more than 32 bytes"},
  };
  for (const Case& c : cases) {
    const absl::Status status = Keyring::DecodeKey(c.input).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.input;
    EXPECT_TRUE(Contains(status, c.expected)) << c.input << ": " << status;
  }
}

TEST(KeyringTest, GenerateKeyMakesFreshAes256Keys) {
  const std::string a = Keyring::GenerateKey();
  const std::string b = Keyring::GenerateKey();
  EXPECT_EQ(a.size(), 44u);
  EXPECT_NE(a, b);
  absl::StatusOr<std::string> raw = Keyring::DecodeKey(a);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->size(), 32u);
  const Keyring ring = Ring({*raw});
  EXPECT_EQ(*ring.Open(ring.Seal("k")), "k");
}

}  // namespace
}  // namespace hivemesh::membership
