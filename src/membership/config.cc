#include "membership/config.h"

#include <algorithm>
#include <cmath>

#include "base/status_macros.h"
#include "base/strings.h"

namespace hivemesh::membership {

SwimConfig SwimConfig::Lan() { return SwimConfig{}; }

SwimConfig SwimConfig::Wan() {
  SwimConfig c;
  c.probe_interval = Millis(5000);
  c.probe_timeout = Millis(3000);
  c.suspicion_mult = 6;
  c.gossip_interval = Millis(500);
  c.gossip_nodes = 4;
  c.gossip_to_the_dead_time = Millis(60000);
  c.push_pull_interval = Millis(60000);
  c.tcp_timeout = Millis(30000);
  return c;
}

SwimConfig SwimConfig::Local() {
  SwimConfig c;
  c.probe_timeout = Millis(200);
  c.indirect_checks = 1;
  c.suspicion_mult = 3;
  c.retransmit_mult = 2;
  c.gossip_interval = Millis(100);
  c.gossip_to_the_dead_time = Millis(15000);
  c.push_pull_interval = Millis(15000);
  c.tcp_timeout = Millis(1000);
  return c;
}

absl::StatusOr<SwimConfig> SwimConfig::Profile(const std::string& name) {
  if (name == "lan") return Lan();
  if (name == "wan") return Wan();
  if (name == "local") return Local();
  return absl::InvalidArgumentError("gossip profile '" + name + "' is not one of lan, wan, local");
}

absl::Status SwimConfig::Validate() const {
  auto positive = [](const char* field, int64_t v) {
    return v > 0 ? absl::OkStatus()
                 : absl::InvalidArgumentError(StrCat(field, ": must be positive, got ", v));
  };
  for (absl::Status s : {positive("probe_interval", probe_interval.count()),
                         positive("probe_timeout", probe_timeout.count()),
                         positive("suspicion_mult", suspicion_mult),
                         positive("suspicion_max_timeout_mult", suspicion_max_timeout_mult),
                         positive("retransmit_mult", retransmit_mult),
                         positive("gossip_interval", gossip_interval.count()),
                         positive("push_pull_interval", push_pull_interval.count()),
                         positive("reconnect_interval", reconnect_interval.count()),
                         positive("tcp_timeout", tcp_timeout.count()),
                         positive("awareness_max_multiplier", awareness_max_multiplier),
                         positive("max_members", max_members),
                         positive("max_claim_checks_per_second", max_claim_checks_per_second)}) {
    HM_RETURN_IF_ERROR(s);
  }
  if (probe_timeout >= probe_interval) {
    return absl::InvalidArgumentError("probe_timeout: must be shorter than probe_interval");
  }
  if (watchers < 0 || watch_suspicion_timeout.count() < 0) {
    return absl::InvalidArgumentError("watchers and watch_suspicion_timeout must not be negative");
  }
  if (indirect_checks < 0 || gossip_nodes < 0) {
    return absl::InvalidArgumentError("indirect_checks and gossip_nodes must not be negative");
  }
  if (udp_buffer_size < 512 || udp_buffer_size > 65000) {
    return absl::InvalidArgumentError(
        StrCat("udp_buffer_size: ", udp_buffer_size, " is outside [512, 65000]"));
  }
  if (protocol_min > protocol_max) {
    return absl::InvalidArgumentError("protocol_min: must not exceed protocol_max");
  }
  return absl::OkStatus();
}

Millis SuspicionMinTimeout(const SwimConfig& c, int cluster_size) {
  const double node_scale = std::max(1.0, std::log10(std::max(1.0, double(cluster_size))));
  return Millis(static_cast<int64_t>(c.suspicion_mult * node_scale *
                                     static_cast<double>(c.probe_interval.count())));
}

int RetransmitLimit(const SwimConfig& c, int cluster_size) {
  const double node_scale = std::ceil(std::log10(double(cluster_size) + 1.0));
  return c.retransmit_mult * static_cast<int>(node_scale);
}

Millis PushPullInterval(const SwimConfig& c, int cluster_size) {
  constexpr int kThreshold = 32;
  if (cluster_size <= kThreshold) return c.push_pull_interval;
  const double mult =
      std::ceil(std::log2(double(cluster_size)) - std::log2(double(kThreshold))) + 1.0;
  return Millis(static_cast<int64_t>(mult * static_cast<double>(c.push_pull_interval.count())));
}

int SuspicionConfirmations(const SwimConfig& c, int cluster_size) {
  const int k = c.suspicion_mult - 2;
  if (cluster_size - 2 < k) return 0;
  return std::max(0, k);
}

}  // namespace hivemesh::membership
