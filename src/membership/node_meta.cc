#include "membership/node_meta.h"

#include "base/status_macros.h"
#include "membership/byte_codec.h"
#include "membership/wire.h"

namespace hivemesh::membership {
namespace {

constexpr uint8_t kMetaVersion = 2;
constexpr uint8_t kLoadVersion = 1;

// Tags of the metadata's extension area. Only append.
constexpr uint64_t kExtSoftwareVersion = 1;

// The extension area: tagged fields until the end; a tag this node does not know is skipped.
absl::Status ReadMetaExtensions(ByteReader& r, NodeMeta* meta) {
  while (!r.done()) {
    uint64_t tag = 0;
    HM_RETURN_IF_ERROR(r.Varint(&tag));
    std::string value;
    HM_RETURN_IF_ERROR(r.Bytes(&value, kMaxMetaBytes, "metadata extension"));
    if (tag == kExtSoftwareVersion) {
      if (value.size() > kMaxSoftwareVersionBytes) {
        return absl::InvalidArgumentError("software version too long in node metadata");
      }
      meta->software_version = std::move(value);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> EncodeNodeMeta(const NodeMeta& meta) {
  std::string out;
  ByteWriter w(out);
  w.U8(kMetaVersion);
  w.Bytes(meta.api_address);
  w.Varint(meta.labels.size());
  for (const auto& [k, v] : meta.labels) {
    w.Bytes(k);
    w.Bytes(v);
  }
  w.Varint(meta.cores);
  w.Varint(meta.memory_mb);
  w.Varint(meta.accelerators);
  w.Varint(meta.models.size());
  for (const ModelAdvert& m : meta.models) {
    w.Bytes(m.name);
    w.U8(m.ready ? 1 : 0);
    w.U8(m.data_policy);
    w.Varint(m.instances);
    w.Varint(m.versions.size());
    for (const std::string& v : m.versions) w.Bytes(v);
  }
  // Flags: bit 0 draining, bit 1 insecure; a decoder ignores bits it does not know.
  w.U8(static_cast<uint8_t>((meta.draining ? 1 : 0) | (meta.insecure ? 2 : 0)));
  // Optional trailing fields, left out when 0 (and the ones before a non-zero one written),
  // then the extension area.
  const bool extensions = !meta.software_version.empty();
  if (meta.software_version.size() > kMaxSoftwareVersionBytes) {
    return absl::InvalidArgumentError("software version too long for node metadata");
  }
  const bool filters = !meta.insight_filters.empty() || extensions;
  const bool ready = !meta.ready_workloads.empty() || filters;
  const bool objects = meta.objects > 0 || ready;
  const bool issuers = meta.issuers > 1 || objects;
  const bool keys = meta.gossip_keys > 0 || issuers;
  const bool roots = meta.roots > 1 || keys;
  if (meta.ready_workloads.size() > kMaxReadyWorkloads) {
    return absl::InvalidArgumentError(
        StrCat("more than ", kMaxReadyWorkloads, " ready workloads in node metadata"));
  }
  if (meta.revocations > 0 || meta.policy > 0 || roots) w.Varint(meta.revocations);
  if (meta.policy > 0 || roots) w.Varint(meta.policy);
  if (roots) w.Varint(meta.roots);
  if (keys) w.Varint(meta.gossip_keys);
  if (issuers) w.Varint(meta.issuers);
  if (objects) w.Varint(meta.objects);
  if (meta.insight_filters.size() > kMaxInsightFilters) {
    return absl::InvalidArgumentError(
        StrCat("more than ", kMaxInsightFilters, " insight filters in node metadata"));
  }
  if (ready) {
    w.Varint(meta.ready_workloads.size());
    for (const std::string& name : meta.ready_workloads) w.Bytes(name);
  }
  if (filters) {
    w.Varint(meta.insight_filters.size());
    for (const std::string& filter : meta.insight_filters) {
      if (filter.empty() || filter.size() > kMaxInsightFilterBytes) {
        return absl::InvalidArgumentError("an insight filter is empty or too long for metadata");
      }
      w.Bytes(filter);
    }
  }
  if (!meta.software_version.empty()) {
    w.Varint(kExtSoftwareVersion);
    w.Bytes(meta.software_version);
  }
  if (out.size() > kMaxMetaBytes) {
    return absl::InvalidArgumentError(StrCat("node metadata takes ", out.size(),
                                             " bytes, more than the gossip limit of ",
                                             kMaxMetaBytes, " (too many models or labels)"));
  }
  return out;
}

absl::StatusOr<NodeMeta> DecodeNodeMeta(std::string_view bytes) {
  NodeMeta meta;
  if (bytes.empty()) return meta;  // a node that announced no metadata
  ByteReader r(bytes);
  uint8_t version = 0;
  HM_RETURN_IF_ERROR(r.U8(&version));
  if (version != kMetaVersion) {
    return absl::InvalidArgumentError(StrCat("unknown metadata version ", version));
  }
  HM_RETURN_IF_ERROR(r.Bytes(&meta.api_address, kMaxAddrBytes, "api address"));
  uint64_t n = 0;
  HM_RETURN_IF_ERROR(r.Varint(&n));
  if (n > r.remaining()) return absl::InvalidArgumentError("label count exceeds the data");
  for (uint64_t i = 0; i < n; ++i) {
    std::string k, v;
    HM_RETURN_IF_ERROR(r.Bytes(&k, kMaxMetaBytes, "label key"));
    HM_RETURN_IF_ERROR(r.Bytes(&v, kMaxMetaBytes, "label value"));
    meta.labels[k] = v;
  }
  HM_RETURN_IF_ERROR(r.U32(&meta.cores));
  HM_RETURN_IF_ERROR(r.Varint(&meta.memory_mb));
  HM_RETURN_IF_ERROR(r.U32(&meta.accelerators));
  HM_RETURN_IF_ERROR(r.Varint(&n));
  if (n > r.remaining()) return absl::InvalidArgumentError("model count exceeds the data");
  for (uint64_t i = 0; i < n; ++i) {
    ModelAdvert m;
    uint8_t ready = 0;
    uint64_t nv = 0;
    HM_RETURN_IF_ERROR(r.Bytes(&m.name, kMaxNameBytes, "model name"));
    HM_RETURN_IF_ERROR(r.U8(&ready));
    HM_RETURN_IF_ERROR(r.U8(&m.data_policy));
    if (m.data_policy > 2) {
      return absl::InvalidArgumentError(StrCat("unknown data policy ", m.data_policy));
    }
    HM_RETURN_IF_ERROR(r.U32(&m.instances));
    HM_RETURN_IF_ERROR(r.Varint(&nv));
    if (nv > r.remaining()) return absl::InvalidArgumentError("version count exceeds the data");
    for (uint64_t j = 0; j < nv; ++j) {
      std::string v;
      HM_RETURN_IF_ERROR(r.Bytes(&v, kMaxNameBytes, "model version"));
      m.versions.push_back(std::move(v));
    }
    m.ready = ready != 0;
    meta.models.push_back(std::move(m));
  }
  uint8_t flags = 0;
  HM_RETURN_IF_ERROR(r.U8(&flags));
  meta.draining = (flags & 1) != 0;
  meta.insecure = (flags & 2) != 0;
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&meta.revocations));
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&meta.policy));
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&meta.roots));
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&meta.gossip_keys));
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&meta.issuers));
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&meta.objects));
  if (!r.done()) {
    HM_RETURN_IF_ERROR(r.Varint(&n));
    if (n > kMaxReadyWorkloads || n > r.remaining()) {
      return absl::InvalidArgumentError("ready workload count exceeds the limit or the data");
    }
    for (uint64_t i = 0; i < n; ++i) {
      std::string name;
      HM_RETURN_IF_ERROR(r.Bytes(&name, 63, "ready workload"));
      meta.ready_workloads.push_back(std::move(name));
    }
  }
  if (!r.done()) {
    HM_RETURN_IF_ERROR(r.Varint(&n));
    if (n > kMaxInsightFilters || n > r.remaining()) {
      return absl::InvalidArgumentError("insight filter count exceeds the limit or the data");
    }
    for (uint64_t i = 0; i < n; ++i) {
      std::string filter;
      HM_RETURN_IF_ERROR(r.Bytes(&filter, kMaxInsightFilterBytes, "insight filter"));
      meta.insight_filters.push_back(std::move(filter));
    }
  }
  HM_RETURN_IF_ERROR(ReadMetaExtensions(r, &meta));
  return meta;
}

std::string EncodeLoadReport(const LoadReport& report) {
  std::string out;
  ByteWriter w(out);
  w.U8(kLoadVersion);
  std::string body;
  ByteWriter b(body);
  size_t count = 0;
  for (const ModelLoad& m : report.models) {
    std::string one;
    ByteWriter o(one);
    o.Bytes(m.name);
    o.Varint(m.queue_depth);
    o.Varint(m.in_flight);
    o.Varint(m.ewma_service_us);
    // Room is left for the head and the control versions' trailer (6 varints).
    if (body.size() + one.size() + 16 + 60 > kMaxLoadBytes) break;
    body += one;
    ++count;
  }
  w.Varint(count);
  out += body;
  const bool objects = report.objects > 0;
  const bool issuers = report.issuers > 1 || objects;
  if (report.revocations > 0 || report.policy > 0 || report.roots > 0 || report.gossip_keys > 0 ||
      issuers) {
    ByteWriter t(out);
    t.Varint(report.revocations);
    t.Varint(report.policy);
    t.Varint(report.roots);
    if (report.gossip_keys > 0 || issuers) t.Varint(report.gossip_keys);
    if (issuers) t.Varint(report.issuers);
    if (objects) t.Varint(report.objects);
  }
  return out;
}

absl::StatusOr<LoadReport> DecodeLoadReport(std::string_view bytes) {
  LoadReport report;
  ByteReader r(bytes);
  uint8_t version = 0;
  HM_RETURN_IF_ERROR(r.U8(&version));
  if (version != kLoadVersion) {
    return absl::InvalidArgumentError(StrCat("unknown load report version ", version));
  }
  uint64_t n = 0;
  HM_RETURN_IF_ERROR(r.Varint(&n));
  if (n > r.remaining()) return absl::InvalidArgumentError("model count exceeds the data");
  for (uint64_t i = 0; i < n; ++i) {
    ModelLoad m;
    HM_RETURN_IF_ERROR(r.Bytes(&m.name, kMaxNameBytes, "model name"));
    HM_RETURN_IF_ERROR(r.U32(&m.queue_depth));
    HM_RETURN_IF_ERROR(r.U32(&m.in_flight));
    HM_RETURN_IF_ERROR(r.U32(&m.ewma_service_us));
    report.models.push_back(std::move(m));
  }
  if (!r.done()) {
    HM_RETURN_IF_ERROR(r.Varint(&report.revocations));
    HM_RETURN_IF_ERROR(r.Varint(&report.policy));
    HM_RETURN_IF_ERROR(r.Varint(&report.roots));
  }
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&report.gossip_keys));
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&report.issuers));
  if (!r.done()) HM_RETURN_IF_ERROR(r.Varint(&report.objects));
  // The extension area, as in the metadata: no tag is known yet; the next release's are skipped.
  while (!r.done()) {
    uint64_t tag = 0;
    std::string value;
    HM_RETURN_IF_ERROR(r.Varint(&tag));
    HM_RETURN_IF_ERROR(r.Bytes(&value, kMaxLoadBytes, "load report extension"));
  }
  return report;
}

}  // namespace hivemesh::membership
