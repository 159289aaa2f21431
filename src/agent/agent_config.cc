#include "agent/agent_config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

#include "base/strings.h"
#include "bus/mqtt_bridge.h"
#include "codec/model_name.h"
#include "codec/repository_codec.h"
#include "identity/certs.h"

namespace hivemesh {
namespace {

struct Setting {
  std::string key;  // YAML key; the flag is --key with '_' -> '-'
  std::function<void(AgentConfig& dst, const AgentConfig& src)> copy;
  std::function<bool(AgentConfig& dst, const YAML::Node& node)> from_yaml;
  CLI::Option* flag = nullptr;
};

template <typename T>
Setting MakeSetting(CLI::App& app, AgentConfig& flags, const std::string& key, T AgentConfig::*m,
                    const std::string& help) {
  Setting s;
  s.key = key;
  s.copy = [m](AgentConfig& dst, const AgentConfig& src) { dst.*m = src.*m; };
  s.from_yaml = [m](AgentConfig& dst, const YAML::Node& node) {
    try {
      dst.*m = node.as<T>();
      return true;
    } catch (const YAML::Exception&) {
      return false;
    }
  };
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  const AgentConfig defaults;
  std::ostringstream def;
  if constexpr (std::is_same_v<T, bool>) {
    s.flag = app.add_flag(flag, flags.*m, help);  // `--insecure`; `insecure: true` in YAML
  } else {
    def << defaults.*m;
    s.flag = app.add_option(flag, flags.*m,
                            help + (def.str().empty() ? "" : " [default: " + def.str() + "]"));
  }
  s.flag->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later flag wins
  return s;
}

std::vector<Setting> BuildSettings(CLI::App& app, AgentConfig& f) {
  std::vector<Setting> v;
  auto add = [&](auto&&... args) { v.push_back(MakeSetting(app, f, args...)); };
  add("node_name", &AgentConfig::node_name, "name of this node [default: the host name]");
  add("http_address", &AgentConfig::http_address, "host:port of the KServe v2 REST API");
  add("grpc_address", &AgentConfig::grpc_address, "host:port of the KServe v2 gRPC API, or off");
  add("grpc_max_message_bytes", &AgentConfig::grpc_max_message_bytes,
      "largest gRPC message received or sent (RESOURCE_EXHAUSTED beyond)");
  add("grpc_memory_quota_mb", &AgentConfig::grpc_memory_quota_mb,
      "memory gRPC may hold of messages in flight, set aside from memory_budget_mb; 0: a "
      "quarter of the budget, at least one message");
  add("model_repository", &AgentConfig::model_repository, "folder of models to serve");
  add("models", &AgentConfig::models,
      "models of the repository to load, name[,name...] [default: all]");
  add("model_control_mode", &AgentConfig::model_control_mode,
      "how models change while running: none, poll (watch the folder) or explicit (the "
      "repository API)");
  add("repository_poll_ms", &AgentConfig::repository_poll_ms,
      "poll mode: how often the model repository folder is rescanned");
  add("admin_access", &AgentConfig::admin_access,
      "who may load and unload models: loopback (this host), token (admin_token_file) or any "
      "(--insecure nodes only)");
  add("admin_token_file", &AgentConfig::admin_token_file,
      "admin_access token: file holding the bearer token for loading and unloading models");
  add("http_threads", &AgentConfig::http_threads, "HTTP I/O threads");
  add("default_instances", &AgentConfig::default_instances,
      "worker instances per model when its config.yaml sets none");
  add("default_queue_limit", &AgentConfig::default_queue_limit,
      "queued requests per model before shedding with 503, when its config.yaml sets none");
  add("max_body_bytes", &AgentConfig::max_body_bytes, "largest request body accepted (413 beyond)");
  add("memory_budget_mb", &AgentConfig::memory_budget_mb,
      "memory for requests in flight, all together (503 beyond); 0: a quarter of RAM, "
      "256 MiB to 1 GiB");
  add("max_image_pixels", &AgentConfig::max_image_pixels,
      "most pixels (width x height) of an image the vision models decode (400 beyond), unless "
      "a model's options.max_image_pixels says otherwise");
  add("header_timeout_ms", &AgentConfig::header_timeout_ms,
      "close connections whose request headers take longer (idle time counts)");
  add("body_timeout_ms", &AgentConfig::body_timeout_ms,
      "time allowed to read a body or write a response");
  add("max_connections", &AgentConfig::max_connections,
      "open connections at most, mesh links included; 0: half the descriptor limit, at most "
      "1024");
  add("max_connections_per_source", &AgentConfig::max_connections_per_source,
      "open connections at most from one address; 0: half of max_connections, at most 256");
  add("idle_link_timeout_ms", &AgentConfig::idle_link_timeout_ms,
      "close mesh links without requests or bytes for this long");
  add("service_hold_ms", &AgentConfig::service_hold_ms,
      "a request for a Service with no ready endpoint (a replica restarting or moving) waits "
      "up to this long for one; 0: 503 at once");
  add("relay_idle_timeout_ms", &AgentConfig::relay_idle_timeout_ms,
      "close a connection relayed at a Service's port (or a tunnel) with no bytes either way "
      "for this long");
  add("drain_timeout_ms", &AgentConfig::drain_timeout_ms,
      "on SIGTERM, longest wait for queued and running requests");
  add("log_level", &AgentConfig::log_level, "trace, debug, info, warn, error or off");
  add("log_format", &AgentConfig::log_format,
      "text (lines for people) or json (one object per line)");
  add("gossip_address", &AgentConfig::gossip_address,
      "host:port for gossip (UDP and TCP); peers must reach it");
  add("join", &AgentConfig::join,
      "seeds to join, host:port[,host:port...]; retried until one answers");
  add("token", &AgentConfig::token,
      "join token (HM1-...) for a first join: the node gets its certificate from a seed");
  add("insecure", &AgentConfig::insecure,
      "run without the mesh's certificates: no mutual TLS between nodes, no authentication "
      "beyond gossip keys (labs only; such a node never joins a secure mesh)");
  add("certificate_ttl", &AgentConfig::certificate_ttl,
      "life of the node certificates this node issues (90s, 30m, 24h, 7d; at least 10s)");
  add("gossip_profile", &AgentConfig::gossip_profile, "gossip timing: lan, wan or local");
  add("gossip_keys", &AgentConfig::gossip_keys,
      "base64 AES keys, comma-separated; the first encrypts, all decrypt (hivemesh keygen)");
  add("state_dir", &AgentConfig::state_dir,
      "folder for what survives restarts (the node key) [default: /var/lib/hivemesh as root, "
      "else $XDG_STATE_HOME/hivemesh]");
  add("cluster_label", &AgentConfig::cluster_label,
      "authenticated label that keeps clusters sharing a key apart");
  add("gossip_max_connections", &AgentConfig::gossip_max_connections,
      "gossip TCP connections served at once (closed beyond)");
  add("gossip_max_connections_per_source", &AgentConfig::gossip_max_connections_per_source,
      "gossip TCP connections served at once from one IP address (closed beyond)");
  add("gossip_buffer_mb", &AgentConfig::gossip_buffer_mb,
      "memory for gossip TCP frames being read, all connections together (refused beyond)");
  add("gossip_head_timeout_ms", &AgentConfig::gossip_head_timeout_ms,
      "close a gossip TCP connection that has not sent its frame's head in this time");
  add("gossip_watchers", &AgentConfig::gossip_watchers,
      "members each node watches over an idle TCP connection, to learn of a crash at once "
      "(0: probes alone)");
  add("gossip_max_members", &AgentConfig::gossip_max_members,
      "most members the node keeps (new names are refused beyond; raise it on every node of a "
      "larger mesh)");
  add("labels", &AgentConfig::labels, "this node's labels, key=value[,key=value...]");
  add("mqtt_url", &AgentConfig::mqtt_url,
      "MQTT broker insights go to: mqtt://host[:port] or mqtts://host[:port] (none by default)");
  add("mqtt_topics", &AgentConfig::mqtt_topics,
      "the insights that go to the broker: MQTT filters, comma-separated [default: all]");
  add("mqtt_username", &AgentConfig::mqtt_username, "user name for the MQTT broker");
  add("mqtt_password_file", &AgentConfig::mqtt_password_file,
      "file whose first line is the MQTT broker's password");
  add("mqtt_ca", &AgentConfig::mqtt_ca, "mqtts: CA bundle for the broker [default: the system's]");
  add("mqtt_queue_mb", &AgentConfig::mqtt_queue_mb,
      "insights kept for the broker while it is unreachable, at most (MiB, on disk)");
  add("mqtt_queue_full", &AgentConfig::mqtt_queue_full,
      "when that is full: drop-oldest or refuse-new (publishers get 503)");
  add("mqtt_backlog_rate", &AgentConfig::mqtt_backlog_rate,
      "insights/s the backlog drains at after an outage, behind live ones (0: no limit)");
  add("routing_mode", &AgentConfig::routing_mode,
      "where inferences run: hivemesh (load-aware), local (never offload), random");
  add("local_margin", &AgentConfig::local_margin,
      "serve here while the predicted time is within this fraction of the best peer's");
  add("local_margin_ms", &AgentConfig::local_margin_ms, "... plus this many milliseconds");
  add("max_hops", &AgentConfig::max_hops, "hops a request may make between nodes");
  add("settle_hold_ms", &AgentConfig::settle_hold_ms,
      "while the mesh's view settles, how long a request for a model with no host waits for one "
      "(then 503 with Retry-After; 0: 404 at once)");
  add("http_advertise_address", &AgentConfig::http_advertise_address,
      "host:port peers use to reach the API [default: http_address]");
  add("drain_announce_ms", &AgentConfig::drain_announce_ms,
      "on SIGTERM, time for the mesh to learn this node is draining");
  return v;
}

}  // namespace

struct AgentFlags::Impl {
  AgentConfig flags;
  std::string config_file;
  std::vector<Setting> settings;
};

AgentFlags::AgentFlags(CLI::App& app) : impl_(std::make_shared<Impl>()) {
  app.add_option("--config", impl_->config_file,
                 "YAML file with any of the settings below (snake_case keys)");
  impl_->settings = BuildSettings(app, impl_->flags);
}

absl::Status ApplyYaml(const std::string& yaml_text, const std::string& file, AgentConfig* config) {
  // The same table as the flags, without a CLI::App.
  CLI::App scratch;
  AgentConfig scratch_flags;
  const std::vector<Setting> settings = BuildSettings(scratch, scratch_flags);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat(file, ": invalid YAML: ", e.what()));
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) return absl::InvalidArgumentError(StrCat(file, ": must be a map of settings"));
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    bool known = false;
    for (const Setting& s : settings) {
      if (s.key != key) continue;
      known = true;
      if (!kv.second.IsScalar() || !s.from_yaml(*config, kv.second)) {
        return absl::InvalidArgumentError(StrCat(file, ": ", key, ": invalid value"));
      }
    }
    if (!known) return absl::InvalidArgumentError(StrCat(file, ": ", key, ": unknown setting"));
  }
  return absl::OkStatus();
}

absl::StatusOr<AgentConfig> AgentFlags::Resolve() const {
  AgentConfig config;
  if (!impl_->config_file.empty()) {
    std::ifstream in(impl_->config_file);
    if (!in) return absl::NotFoundError("cannot read config file '" + impl_->config_file + "'");
    std::stringstream text;
    text << in.rdbuf();
    absl::Status s = ApplyYaml(text.str(), impl_->config_file, &config);
    if (!s.ok()) return s;
  }
  for (const Setting& s : impl_->settings) {
    if (s.flag->count() > 0) s.copy(config, impl_->flags);
  }
  if (config.node_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    config.node_name = host[0] ? host : "hivemesh";
  }
  absl::Status valid = config.Validate();
  if (!valid.ok()) return valid;
  return config;
}

absl::Status AgentConfig::Validate() const {
  const size_t colon = http_address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError("http_address: '" + http_address + "' is not host:port");
  }
  const std::string port = http_address.substr(colon + 1);
  int p = -1;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || ptr != port.data() + port.size() || p < 0 || p > 65535) {
    return absl::InvalidArgumentError("http_address: port '" + port + "' is not in 0..65535");
  }
  auto range = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
      return absl::InvalidArgumentError(StrCat(name, ": ", v, " is outside [", lo, ", ", hi, "]"));
    }
    return absl::OkStatus();
  };
  for (absl::Status s :
       {range("http_threads", http_threads, 1, 64),
        range("default_instances", default_instances, 1, 256),
        range("default_queue_limit", default_queue_limit, 0, 1 << 20),
        range("max_body_bytes", static_cast<int64_t>(max_body_bytes), 1024, int64_t{1} << 32),
        range("grpc_max_message_bytes", static_cast<int64_t>(grpc_max_message_bytes), 1024,
              (int64_t{1} << 31) - 1),
        range("header_timeout_ms", header_timeout_ms, 1, 3600000),
        range("body_timeout_ms", body_timeout_ms, 1, 3600000),
        range("max_connections", max_connections, 0, 1 << 20),
        range("max_connections_per_source", max_connections_per_source, 0, 1 << 20),
        range("idle_link_timeout_ms", idle_link_timeout_ms, 1, 86400000),
        range("mqtt_queue_mb", mqtt_queue_mb, 1, 1 << 20),
        range("mqtt_backlog_rate", mqtt_backlog_rate, 0, 1000000),
        range("relay_idle_timeout_ms", relay_idle_timeout_ms, 1, 86400000),
        range("service_hold_ms", service_hold_ms, 0, 3600000),
        range("drain_timeout_ms", drain_timeout_ms, 0, 3600000),
        range("local_margin_ms", local_margin_ms, 0, 3600000),
        range("max_hops", max_hops, 1, 8),
        range("settle_hold_ms", settle_hold_ms, 0, 60000),
        range("gossip_max_connections", gossip_max_connections, 1, 65536),
        range("gossip_max_connections_per_source", gossip_max_connections_per_source, 1, 65536),
        range("gossip_buffer_mb", gossip_buffer_mb, 20, 4096),
        range("gossip_head_timeout_ms", gossip_head_timeout_ms, 1, 3600000),
        range("gossip_max_members", gossip_max_members, 2, 1000000),
        range("gossip_watchers", gossip_watchers, 0, 16),
        range("drain_announce_ms", drain_announce_ms, 0, 60000),
        range("repository_poll_ms", repository_poll_ms, 10, 3600000),
        range("max_image_pixels", max_image_pixels, 1, int64_t{1} << 32)}) {
    if (!s.ok()) return s;
  }
  if (memory_budget_mb > (uint64_t{1} << 24) || grpc_memory_quota_mb > (uint64_t{1} << 24)) {
    return absl::InvalidArgumentError(StrCat(
        memory_budget_mb > (uint64_t{1} << 24) ? "memory_budget_mb: " : "grpc_memory_quota_mb: ",
        std::max(memory_budget_mb, grpc_memory_quota_mb), " is more than 16 TiB"));
  }
  if (MemoryBudgetBytes() < 2 * max_body_bytes) {
    return absl::InvalidArgumentError(
        StrCat("memory_budget_mb: ", MemoryBudgetBytes() >> 20,
               " MiB cannot hold two of the largest request bodies (max_body_bytes ",
               max_body_bytes, "); raise it or lower max_body_bytes"));
  }
  if (grpc_enabled() && MemoryBudgetBytes() - GrpcMemoryQuotaBytes() < 2 * max_body_bytes) {
    return absl::InvalidArgumentError(
        StrCat("memory_budget_mb: ", MemoryBudgetBytes() >> 20, " MiB cannot hold gRPC's quota (",
               GrpcMemoryQuotaBytes() >> 20,
               " MiB, grpc_memory_quota_mb) and two of the largest "
               "request bodies (max_body_bytes ",
               max_body_bytes,
               "); raise it, lower "
               "grpc_memory_quota_mb, grpc_max_message_bytes or max_body_bytes, or turn gRPC off"));
  }
  if (model_control_mode != "none" && model_control_mode != "poll" &&
      model_control_mode != "explicit") {
    return absl::InvalidArgumentError("model_control_mode: '" + model_control_mode +
                                      "' is not one of none, poll, explicit");
  }
  if (admin_access != "loopback" && admin_access != "token" && admin_access != "any") {
    return absl::InvalidArgumentError("admin_access: '" + admin_access +
                                      "' is not one of loopback, token, any");
  }
  if (admin_access == "any" && !insecure) {
    return absl::InvalidArgumentError(
        "admin_access: any lets whoever reaches the port make control calls; in a secure mesh "
        "they need an operator certificate, a caller on the node itself (loopback) or the "
        "node's admin token (admin_access: token). any is for --insecure nodes only");
  }
  if (admin_access == "token" && admin_token_file.empty()) {
    return absl::InvalidArgumentError(
        "admin_access: token needs admin_token_file, the file holding the token");
  }
  for (const std::string& name : ModelList()) {
    if (!IsValidModelName(name)) {
      return absl::InvalidArgumentError(
          StrCat("models: '", PrintableName(name), "' is not a model name: ", kModelNameRule));
    }
  }
  if (mqtt_queue_full != "drop-oldest" && mqtt_queue_full != "refuse-new") {
    return absl::InvalidArgumentError("mqtt_queue_full: '" + mqtt_queue_full +
                                      "' is not one of drop-oldest, refuse-new");
  }
  if (!mqtt_url.empty()) {
    if (absl::StatusOr<bus::MqttAddress> a = bus::ParseMqttUrl(mqtt_url); !a.ok())
      return a.status();
  }
  if (routing_mode != "hivemesh" && routing_mode != "local" && routing_mode != "random") {
    return absl::InvalidArgumentError("routing_mode: '" + routing_mode +
                                      "' is not one of hivemesh, local, random");
  }
  if (!(local_margin >= 0 && local_margin <= 100)) {
    return absl::InvalidArgumentError(
        StrCat("local_margin: ", local_margin, " is outside [0, 100]"));
  }
  if (grpc_enabled()) {
    const size_t c = grpc_address.rfind(':');
    int gp = -1;
    const char* end = grpc_address.data() + grpc_address.size();
    auto [gptr, gec] = c == std::string::npos
                           ? std::from_chars_result{nullptr, std::errc::invalid_argument}
                           : std::from_chars(grpc_address.data() + c + 1, end, gp);
    if (c == std::string::npos || c == 0 || gec != std::errc() || gptr != end || gp < 0 ||
        gp > 65535) {
      return absl::InvalidArgumentError("grpc_address: '" + grpc_address +
                                        "' is not host:port (or off for no gRPC)");
    }
  }
  if (!http_advertise_address.empty()) {
    const size_t c = http_advertise_address.rfind(':');
    int ap = 0;
    const char* end = http_advertise_address.data() + http_advertise_address.size();
    auto [aptr, aec] = c == std::string::npos
                           ? std::from_chars_result{nullptr, std::errc::invalid_argument}
                           : std::from_chars(http_advertise_address.data() + c + 1, end, ap);
    if (c == std::string::npos || c == 0 || aec != std::errc() || aptr != end || ap < 1 ||
        ap > 65535) {
      return absl::InvalidArgumentError("http_advertise_address: '" + http_advertise_address +
                                        "' is not host:port");
    }
  }
  if (model_repository.empty()) return absl::InvalidArgumentError("model_repository: must be set");
  if (absl::StatusOr<int64_t> ttl = ParseDurationSeconds(certificate_ttl, "certificate_ttl");
      !ttl.ok() || *ttl < 10) {
    return absl::InvalidArgumentError(ttl.ok() ? "certificate_ttl: must be at least 10s"
                                               : std::string(MessageOf(ttl.status())));
  }
  if (!token.empty()) {
    if (absl::Status t = identity::JoinToken::Parse(token).status(); !t.ok()) {
      return absl::InvalidArgumentError(StrCat("token: ", MessageOf(t)));
    }
    if (join.empty()) {
      return absl::InvalidArgumentError("token: needs join, the seeds to get a certificate from");
    }
    if (insecure) {
      return absl::InvalidArgumentError(
          "token: an insecure node takes no certificate; leave out --insecure to join securely");
    }
  }
  if (log_format != "text" && log_format != "json") {
    return absl::InvalidArgumentError("log_format: '" + log_format + "' is not one of text, json");
  }
  if (gossip_profile != "lan" && gossip_profile != "wan" && gossip_profile != "local") {
    return absl::InvalidArgumentError("gossip_profile: '" + gossip_profile +
                                      "' is not one of lan, wan, local");
  }
  for (std::string_view pair : Split(labels, ',')) {
    if (pair.empty() && labels.empty()) break;
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(StrCat("labels: '", pair, "' is not key=value"));
    }
  }
  return absl::OkStatus();
}

std::string AgentConfig::StateDir() const {
  if (!state_dir.empty()) return state_dir;
  if (geteuid() == 0) return "/var/lib/hivemesh";
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/hivemesh";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && home[0] != '\0' ? home : ".") + "/.local/state/hivemesh";
}

uint64_t AgentConfig::MemoryBudgetBytes() const {
  if (memory_budget_mb > 0) return memory_budget_mb << 20;
  const uint64_t ram =
      static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return std::clamp<uint64_t>(ram / 4, uint64_t{256} << 20, uint64_t{1} << 30);
}

uint64_t AgentConfig::GrpcMemoryQuotaBytes() const {
  const uint64_t half = MemoryBudgetBytes() / 2;
  if (grpc_memory_quota_mb > 0) return std::min(grpc_memory_quota_mb << 20, half);
  return std::min(std::max(MemoryBudgetBytes() / 4, grpc_max_message_bytes + (uint64_t{16} << 20)),
                  half);
}

int64_t AgentConfig::CertificateTtlSeconds() const {
  return ParseDurationSeconds(certificate_ttl, "certificate_ttl").value_or(7 * 86400);
}

std::vector<std::string> AgentConfig::JoinList() const {
  std::vector<std::string> out;
  for (std::string_view s : Split(join, ',')) {
    if (!s.empty()) out.emplace_back(s);
  }
  return out;
}

std::vector<std::string> AgentConfig::ModelList() const {
  std::vector<std::string> out;
  for (std::string_view s : Split(models, ',')) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (!s.empty()) out.emplace_back(s);
  }
  return out;
}

std::map<std::string, std::string> AgentConfig::LabelMap() const {
  std::map<std::string, std::string> out;
  if (labels.empty()) return out;
  for (std::string_view pair : Split(labels, ',')) {
    const size_t eq = pair.find('=');
    out[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
  }
  return out;
}

std::string AgentConfig::http_host() const {
  return http_address.substr(0, http_address.rfind(':'));
}

uint16_t AgentConfig::http_port() const {
  return static_cast<uint16_t>(std::stoi(http_address.substr(http_address.rfind(':') + 1)));
}

}  // namespace hivemesh
