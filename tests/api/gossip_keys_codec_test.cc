// The gossip keys as one member hands them to another (api/issuer_handler.h): what a fetching
// node decodes before it checks the issuer's signature.
#include <gtest/gtest.h>

#include <string>

#include "api/issuer_handler.h"

namespace hivemesh {
namespace {

TEST(GossipKeysCodecTest, RoundTrips) {
  SignedGossipKeys keys{7, {"bmV3LWtleQ==", "b2xkLWtleQ=="}, std::string("\x01\x00\xff", 3)};
  absl::StatusOr<SignedGossipKeys> back = DecodeGossipKeys(EncodeGossipKeys(keys));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, 7u);
  EXPECT_EQ(back->keys, keys.keys);
  EXPECT_EQ(back->signature, keys.signature);
}

TEST(GossipKeysCodecTest, AnythingElseIsRefusedWithAReason) {
  const std::string nine_keys =
      R"({"version":1,"keys":["a","a","a","a","a","a","a","a","a"],"signature":"00"})";
  for (const std::string& bad : {
           std::string(""),
           std::string("[]"),
           std::string(R"({"version":1,"keys":[],"signature":"00"})"),
           std::string(R"({"version":-1,"keys":["a"],"signature":"00"})"),
           std::string(R"({"version":1,"keys":["a"],"signature":"zz"})"),
           std::string(R"({"version":1,"keys":[1],"signature":"00"})"),
           std::string(R"({"version":1,"keys":[""],"signature":"00"})"),
           std::string(R"({"version":1,"keys":["a"]})"),
           R"({"version":1,"keys":[")" + std::string(65, 'a') + R"("],"signature":"00"})",
           nine_keys,
           R"({"version":1,"keys":["a"],"signature":")" + std::string(5000, '0') + R"("})",
       }) {
    absl::StatusOr<SignedGossipKeys> decoded = DecodeGossipKeys(bad);
    EXPECT_FALSE(decoded.ok()) << bad;
    EXPECT_NE(decoded.status().message().find("gossip keys"), std::string::npos)
        << decoded.status();
  }
}

}  // namespace
}  // namespace hivemesh
