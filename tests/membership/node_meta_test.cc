#include "membership/node_meta.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "membership/wire.h"

namespace hivemesh::membership {
namespace {

using ::testing::HasSubstr;

TEST(NodeMetaTest, RoundTrips) {
  NodeMeta m;
  m.api_address = "10.1.2.3:8000";
  m.labels = {{"zone", "line-1"}, {"hardware", "jetson"}};
  m.cores = 6;
  m.memory_mb = 7800;
  m.accelerators = 1;
  m.models = {{"people-detector", {"1", "2"}, true, 1, 3}, {"broken", {}, false}};
  m.draining = true;
  absl::StatusOr<std::string> enc = EncodeNodeMeta(m);
  ASSERT_TRUE(enc.ok()) << enc.status();
  absl::StatusOr<NodeMeta> dec = DecodeNodeMeta(*enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_EQ(dec->api_address, m.api_address);
  EXPECT_EQ(dec->labels, m.labels);
  EXPECT_EQ(dec->cores, 6u);
  EXPECT_EQ(dec->memory_mb, 7800u);
  EXPECT_EQ(dec->accelerators, 1u);
  ASSERT_EQ(dec->models.size(), 2u);
  EXPECT_EQ(dec->models[0].versions, (std::vector<std::string>{"1", "2"}));
  EXPECT_TRUE(dec->models[0].ready);
  EXPECT_FALSE(dec->models[1].ready);
  EXPECT_EQ(dec->models[0].data_policy, 1);
  EXPECT_EQ(dec->models[0].instances, 3u);
  EXPECT_EQ(dec->models[1].data_policy, 0);
  EXPECT_EQ(dec->models[1].instances, 1u);
  EXPECT_TRUE(dec->draining);
  EXPECT_FALSE(dec->insecure);
  m.draining = false;
  m.insecure = true;
  absl::StatusOr<NodeMeta> insecure = DecodeNodeMeta(*EncodeNodeMeta(m));
  ASSERT_TRUE(insecure.ok());
  EXPECT_FALSE(insecure->draining);
  EXPECT_TRUE(insecure->insecure);
  // The flags byte is last: bits a decoder does not know are ignored.
  std::string future = *EncodeNodeMeta(m);
  future.back() = static_cast<char>(0x80 | 2);
  EXPECT_TRUE(DecodeNodeMeta(future)->insecure);
  EXPECT_FALSE(DecodeNodeMeta(future)->draining);
  // An issuer's revocation count, after the flags (left out when 0).
  EXPECT_EQ(DecodeNodeMeta(*EncodeNodeMeta(m))->revocations, 0u);
  m.revocations = 300;
  EXPECT_EQ(DecodeNodeMeta(*EncodeNodeMeta(m))->revocations, 300u);
  // The policy version after it; a policy without revocations writes a revocation count of 0.
  m.policy = 9;
  EXPECT_EQ(DecodeNodeMeta(*EncodeNodeMeta(m))->policy, 9u);
  m.revocations = 0;
  EXPECT_EQ(DecodeNodeMeta(*EncodeNodeMeta(m))->policy, 9u);
  EXPECT_EQ(DecodeNodeMeta(*EncodeNodeMeta(m))->revocations, 0u);
  // The number of roots trusted after it, when more than one.
  m.roots = 2;
  m.policy = 0;
  EXPECT_EQ(DecodeNodeMeta(*EncodeNodeMeta(m))->roots, 2u);
  EXPECT_EQ(DecodeNodeMeta(*EncodeNodeMeta(m))->policy, 0u);
  // The gossip keys' version after it; with it, the roots are written even when 0 or 1.
  const std::string before_keys = *EncodeNodeMeta(m);
  m.gossip_keys = 4;
  m.roots = 0;
  absl::StatusOr<NodeMeta> keys = DecodeNodeMeta(*EncodeNodeMeta(m));
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->gossip_keys, 4u);
  EXPECT_EQ(keys->roots, 0u);
  EXPECT_EQ(DecodeNodeMeta(before_keys)->gossip_keys, 0u) << "metadata of before the field";
  // The issuers known after it, when more than one; with it, the keys' version is written.
  const std::string before_issuers = *EncodeNodeMeta(m);
  m.issuers = 3;
  m.gossip_keys = 0;
  absl::StatusOr<NodeMeta> issuers = DecodeNodeMeta(*EncodeNodeMeta(m));
  ASSERT_TRUE(issuers.ok()) << issuers.status();
  EXPECT_EQ(issuers->issuers, 3u);
  EXPECT_EQ(issuers->gossip_keys, 0u);
  EXPECT_EQ(DecodeNodeMeta(before_issuers)->issuers, 0u) << "metadata of before the field";
  // The objects' fingerprint after it (docs/services.md); with it, the issuers are written.
  const std::string before_objects = *EncodeNodeMeta(m);
  m.objects = 0xfedcba9876543210ULL;
  m.issuers = 0;
  absl::StatusOr<NodeMeta> objects = DecodeNodeMeta(*EncodeNodeMeta(m));
  ASSERT_TRUE(objects.ok()) << objects.status();
  EXPECT_EQ(objects->objects, 0xfedcba9876543210ULL);
  EXPECT_EQ(objects->issuers, 0u);
  EXPECT_EQ(DecodeNodeMeta(before_objects)->objects, 0u) << "metadata of before the field";
  EXPECT_FALSE(DecodeNodeMeta(*EncodeNodeMeta(m) + "x").ok()) << "trailing bytes";
  // The ready workloads last; with them, the objects' fingerprint is written even when 0.
  const std::string before_ready = *EncodeNodeMeta(m);
  m.ready_workloads = {"object-detection", "web"};
  m.objects = 0;
  absl::StatusOr<NodeMeta> ready = DecodeNodeMeta(*EncodeNodeMeta(m));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->ready_workloads, (std::vector<std::string>{"object-detection", "web"}));
  EXPECT_EQ(ready->objects, 0u);
  EXPECT_TRUE(DecodeNodeMeta(before_ready)->ready_workloads.empty());
  EXPECT_FALSE(DecodeNodeMeta(*EncodeNodeMeta(m) + "x").ok()) << "trailing bytes";
  m.ready_workloads.assign(kMaxReadyWorkloads + 1, "w");
  EXPECT_FALSE(EncodeNodeMeta(m).ok()) << "too many ready workloads";
  std::string forged = before_ready;
  forged += static_cast<char>(100);  // a count over the limit
  EXPECT_FALSE(DecodeNodeMeta(forged).ok());
  // The insight filters after them; with them, the ready workloads are written even when none.
  m.ready_workloads.clear();
  const std::string before_filters = *EncodeNodeMeta(m);
  m.insight_filters = {"site/+/alerts/#", "cams/1/people"};
  absl::StatusOr<NodeMeta> filters = DecodeNodeMeta(*EncodeNodeMeta(m));
  ASSERT_TRUE(filters.ok()) << filters.status();
  EXPECT_EQ(filters->insight_filters, m.insight_filters);
  EXPECT_TRUE(filters->ready_workloads.empty());
  EXPECT_TRUE(DecodeNodeMeta(before_filters)->insight_filters.empty());
  EXPECT_FALSE(DecodeNodeMeta(*EncodeNodeMeta(m) + "x").ok()) << "trailing bytes";
  m.insight_filters.assign(kMaxInsightFilters + 1, "a");
  EXPECT_FALSE(EncodeNodeMeta(m).ok()) << "too many filters";
  m.insight_filters = {std::string(kMaxInsightFilterBytes + 1, 'a')};
  EXPECT_FALSE(EncodeNodeMeta(m).ok()) << "a filter over the limit";
  forged = *EncodeNodeMeta(NodeMeta{.api_address = "a:1", .ready_workloads = {"w"}});
  forged += static_cast<char>(kMaxInsightFilters + 1);  // a forged count over the limit
  EXPECT_FALSE(DecodeNodeMeta(forged).ok());
  EXPECT_TRUE(DecodeNodeMeta("").ok()) << "no metadata at all is valid (an empty node)";
}

// What the next release adds to its metadata goes in the extension area, which this release
// reads past: the two can gossip during a rolling upgrade.
TEST(NodeMetaTest, TheSoftwareVersionAndFieldsOfALaterReleaseAreRead) {
  NodeMeta m;
  m.api_address = "10.0.0.1:8000";
  m.software_version = "0.1.0";
  absl::StatusOr<NodeMeta> dec = DecodeNodeMeta(*EncodeNodeMeta(m));
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_EQ(dec->software_version, "0.1.0");
  EXPECT_TRUE(dec->insight_filters.empty());
  // A later release's fields: unknown tags, before and after the ones this release knows.
  auto ext = [](uint8_t tag, std::string_view value) {
    return std::string(1, static_cast<char>(tag)) + static_cast<char>(value.size()) +
           std::string(value);
  };
  NodeMeta bare{.api_address = "10.0.0.1:8000", .insight_filters = {"a/#"}};
  const std::string base = *EncodeNodeMeta(bare);
  for (const std::string& later : {base + ext(9, "future") + ext(1, "0.2.0"),
                                   base + ext(1, "0.2.0") + ext(100, std::string(40, 'z'))}) {
    absl::StatusOr<NodeMeta> read = DecodeNodeMeta(later);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->software_version, "0.2.0");
    EXPECT_EQ(read->insight_filters, bare.insight_filters);
  }
  // Metadata of before the field: no version.
  EXPECT_EQ(DecodeNodeMeta(base)->software_version, "");
  // Malformed extensions are errors: a length past the data, a version over the bound.
  EXPECT_FALSE(DecodeNodeMeta(base + "\x09\x05"
                                     "ab")
                   .ok());
  EXPECT_FALSE(DecodeNodeMeta(base + ext(1, std::string(kMaxSoftwareVersionBytes + 1, 'v'))).ok());
  m.software_version.assign(kMaxSoftwareVersionBytes + 1, 'v');
  EXPECT_FALSE(EncodeNodeMeta(m).ok());
}

TEST(LoadReportTest, FieldsOfALaterReleaseAreSkipped) {
  LoadReport r;
  r.models = {{"identity", 1, 0, 5}};
  r.objects = 7;  // every trailing field is written before the extension area
  const std::string later = EncodeLoadReport(r) +
                            "\x05\x03"
                            "abc";
  absl::StatusOr<LoadReport> read = DecodeLoadReport(later);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->objects, 7u);
  ASSERT_EQ(read->models.size(), 1u);
  EXPECT_FALSE(DecodeLoadReport(EncodeLoadReport(r) + "\x05\x09"
                                                      "abc")
                   .ok())
      << "cut short";
}

TEST(NodeMetaTest, TooMuchMetadataIsRefusedWithAReason) {
  NodeMeta m;
  for (int i = 0; i < 200; ++i)
    m.models.push_back({"model-number-" + std::to_string(i), {"1"}, true});
  absl::StatusOr<std::string> enc = EncodeNodeMeta(m);
  ASSERT_FALSE(enc.ok());
  EXPECT_THAT(std::string(enc.status().message()), HasSubstr("more than the gossip limit"));
}

TEST(NodeMetaTest, MalformedMetadataIsAnErrorNotACrash) {
  NodeMeta m;
  m.api_address = "a:1";
  m.models = {{"x", {"1"}, true}};
  const std::string enc = *EncodeNodeMeta(m);
  for (size_t cut = 1; cut < enc.size(); ++cut) {
    EXPECT_FALSE(DecodeNodeMeta(enc.substr(0, cut)).ok()) << cut;
  }
  // Six bytes more read as the optional revocation count, policy version, roots, gossip keys'
  // version, issuers and objects; anything past them is refused.
  EXPECT_TRUE(DecodeNodeMeta(enc + "xxxxxx").ok());
  EXPECT_FALSE(DecodeNodeMeta(enc + "xxxxxxx").ok());
  EXPECT_FALSE(DecodeNodeMeta(enc + "\x80").ok()) << "a count cut short";
  EXPECT_FALSE(DecodeNodeMeta("\x07").ok()) << "unknown version";
  m.models[0].data_policy = 3;
  EXPECT_THAT(std::string(DecodeNodeMeta(*EncodeNodeMeta(m)).status().message()),
              HasSubstr("unknown data policy 3"));
}

TEST(LoadReportTest, CarriesTheControlVersionsWhenThereAreAny) {
  LoadReport r;
  r.models = {{"identity", 1, 0, 5}};
  const std::string plain = EncodeLoadReport(r);
  EXPECT_EQ(DecodeLoadReport(plain)->policy, 0u);
  r.revocations = 2;
  r.policy = 7;
  r.roots = 3;
  const std::string with = EncodeLoadReport(r);
  EXPECT_GT(with.size(), plain.size());
  absl::StatusOr<LoadReport> d = DecodeLoadReport(with);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->revocations, 2u);
  EXPECT_EQ(d->policy, 7u);
  EXPECT_EQ(d->roots, 3u);
  ASSERT_EQ(d->models.size(), 1u);
  EXPECT_EQ(d->gossip_keys, 0u) << "a report of before the field (three versions)";
  // The gossip keys' version, a fourth one; it alone writes the trailer too.
  r = LoadReport{};
  r.gossip_keys = 6;
  absl::StatusOr<LoadReport> keys = DecodeLoadReport(EncodeLoadReport(r));
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->gossip_keys, 6u);
  EXPECT_EQ(keys->policy, 0u);
  EXPECT_EQ(keys->issuers, 0u) << "a report of before the field (four versions)";
  // The issuers known, a fifth one, when more than one.
  r.issuers = 2;
  absl::StatusOr<LoadReport> issuers = DecodeLoadReport(EncodeLoadReport(r));
  ASSERT_TRUE(issuers.ok()) << issuers.status();
  EXPECT_EQ(issuers->issuers, 2u);
  EXPECT_EQ(issuers->gossip_keys, 6u);
  EXPECT_EQ(issuers->objects, 0u) << "a report of before the field (five versions)";
  r.objects = 77;
  absl::StatusOr<LoadReport> objects = DecodeLoadReport(EncodeLoadReport(r));
  ASSERT_TRUE(objects.ok()) << objects.status();
  EXPECT_EQ(objects->objects, 77u);
  EXPECT_FALSE(DecodeLoadReport(EncodeLoadReport(r) + "x").ok()) << "trailing bytes";
  EXPECT_FALSE(DecodeLoadReport(plain + "\x01").ok()) << "a trailer cut short";
}

TEST(LoadReportTest, RoundTripsAndStaysWithinTheLimit) {
  LoadReport r;
  r.models = {{"identity", 3, 1, 42}, {"vibration-anomaly", 0, 0, 9}};
  absl::StatusOr<LoadReport> d = DecodeLoadReport(EncodeLoadReport(r));
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->models.size(), 2u);
  EXPECT_EQ(d->models[0].queue_depth, 3u);
  EXPECT_EQ(d->models[0].in_flight, 1u);
  EXPECT_EQ(d->models[0].ewma_service_us, 42u);
  LoadReport big;
  for (int i = 0; i < 500; ++i) big.models.push_back({"model-" + std::to_string(i), 1, 1, 1});
  const std::string enc = EncodeLoadReport(big);
  EXPECT_LE(enc.size(), kMaxLoadBytes);
  EXPECT_TRUE(DecodeLoadReport(enc).ok());
  EXPECT_FALSE(DecodeLoadReport("\x01\x05").ok());
}

}  // namespace
}  // namespace hivemesh::membership
