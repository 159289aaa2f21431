#include "services/kserve_backend.h"

#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>

#include "absl/synchronization/notification.h"
#include "base/strings.h"
#include "codec/infer_codec.h"
#include "codec/model_name.h"
#include "serving/backend.h"
#include "tensor/datatype.h"
#include "transport/peer_client.h"

namespace hivemesh::services {
namespace {

using simdjson::dom::element;

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

absl::StatusOr<element> Parse(simdjson::dom::parser& parser, std::string_view json,
                              std::string_view what) {
  if (json.size() > kMaxKserveAnswerBytes) {
    return Invalid(StrCat(what, ": larger than ", kMaxKserveAnswerBytes, " bytes"));
  }
  element root;
  if (parser.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS) {
    return Invalid(StrCat(what, ": not JSON"));
  }
  return root;
}

std::string_view StringOr(element obj, std::string_view key, std::string_view fallback = "") {
  std::string_view out;
  if (obj[key].get_string().get(out) != simdjson::SUCCESS) return fallback;
  return out;
}

// One tensor of a metadata answer, as a config's {name, datatype, shape} map.
absl::Status EmitTensor(YAML::Emitter& out, element t, std::string_view where) {
  std::string_view name;
  if (t["name"].get_string().get(name) != simdjson::SUCCESS || name.empty()) {
    return Invalid(StrCat(where, ".name: missing"));
  }
  std::string_view type_name;
  if (t["datatype"].get_string().get(type_name) != simdjson::SUCCESS ||
      !DataTypeFromName(type_name).has_value()) {
    return Invalid(StrCat(where, ".datatype: not a KServe v2 datatype"));
  }
  simdjson::dom::array shape;
  if (t["shape"].get_array().get(shape) != simdjson::SUCCESS || shape.size() > 16) {
    return Invalid(StrCat(where, ".shape: not a list of at most 16 dimensions"));
  }
  out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted
      << std::string(name) << YAML::Key << "datatype" << YAML::Value << std::string(type_name)
      << YAML::Key << "shape" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (element d : shape) {
    int64_t dim = 0;
    if (d.get_int64().get(dim) != simdjson::SUCCESS || dim < -1 || dim > (int64_t{1} << 40)) {
      return Invalid(StrCat(where, ".shape: dimensions are -1 or a size"));
    }
    out << dim;
  }
  out << YAML::EndSeq << YAML::EndMap;
  return absl::OkStatus();
}

absl::Status EmitTensors(YAML::Emitter& out, element meta, std::string_view key) {
  simdjson::dom::array list;
  if (meta[key].get_array().get(list) != simdjson::SUCCESS) {
    return Invalid(StrCat(key, ": missing"));
  }
  if (list.size() == 0 || list.size() > 256) return Invalid(StrCat(key, ": 1 to 256 tensors"));
  out << YAML::Key << std::string(key) << YAML::Value << YAML::BeginSeq;
  size_t i = 0;
  for (element t : list) {
    if (absl::Status s = EmitTensor(out, t, StrCat(key, "[", i++, "]")); !s.ok()) return s;
  }
  out << YAML::EndSeq;
  return absl::OkStatus();
}

class KserveBackend : public Backend {
 public:
  KserveBackend(PeerClient* client, uint16_t port, std::string model, int timeout_ms)
      : client_(client),
        address_(StrCat("127.0.0.1:", port)),
        target_(StrCat("/v2/models/", model, "/infer")),
        timeout_(timeout_ms) {}

  absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) override {
    PeerRequest r;
    r.address = address_;
    r.target = target_;
    r.link = false;
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = EncodeInferRequest(inputs);
    r.timeout = timeout_;
    const absl::StatusOr<PeerResponse> answer = SendAndWait(*client_, std::move(r));
    if (!answer.ok()) {
      return absl::Status(answer.status().code(), StrCat("the KServe v2 server at ", address_, ": ",
                                                         answer.status().message()));
    }
    const std::shared_ptr<const std::string> body =
        answer->body != nullptr ? answer->body : std::make_shared<const std::string>();
    if (answer->status != 200) {
      std::string why = DecodeError(*body).value_or(body->substr(0, 200));
      std::string message = StrCat("the KServe v2 server answered ", answer->status, ": ", why);
      // What the client sent was wrong; anything else is the server's trouble.
      return answer->status == 400 ? Invalid(std::move(message))
                                   : absl::UnavailableError(std::move(message));
    }
    std::optional<uint64_t> header_length;
    if (auto h = answer->headers.Get("inference-header-content-length")) {
      header_length = ParseUint(*h);
      if (!header_length) return absl::UnavailableError("the KServe v2 server: bad header length");
    }
    absl::StatusOr<InferResponse> decoded = DecodeInferResponse(body, header_length);
    if (!decoded.ok()) {
      return absl::UnavailableError(
          StrCat("the KServe v2 server's answer: ", decoded.status().message()));
    }
    for (Tensor& t : decoded->outputs) outputs->push_back(std::move(t));
    return absl::OkStatus();
  }

 private:
  PeerClient* const client_;
  const std::string address_;
  const std::string target_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace

absl::StatusOr<PeerResponse> SendAndWait(PeerClient& client, PeerRequest request) {
  const std::chrono::milliseconds timeout = request.timeout;
  // The callback may run after the wait gave up: it writes to state it shares.
  struct Wait {
    absl::Notification done;
    absl::StatusOr<PeerResponse> answer = absl::UnavailableError("no answer");
  };
  auto wait = std::make_shared<Wait>();
  client.Send(std::move(request), [wait](absl::StatusOr<PeerResponse> answer) {
    wait->answer = std::move(answer);
    wait->done.Notify();
  });
  if (!wait->done.WaitForNotificationWithTimeout(absl::FromChrono(timeout) + absl::Seconds(1))) {
    return absl::DeadlineExceededError("no answer");
  }
  return std::move(wait->answer);
}

absl::StatusOr<KserveIndex> ParseKserveIndex(std::string_view json) {
  simdjson::dom::parser parser;
  absl::StatusOr<element> root = Parse(parser, json, "repository index");
  if (!root.ok()) return root.status();
  simdjson::dom::array list;
  if (root->get_array().get(list) != simdjson::SUCCESS) {
    return Invalid("repository index: not a list of models");
  }
  KserveIndex out;
  std::set<std::string> ready;
  for (element m : list) {
    std::string_view name;
    if (m["name"].get_string().get(name) != simdjson::SUCCESS) continue;
    const std::string_view state = StringOr(m, "state", "READY");
    if (state != "READY") {
      out.skipped.push_back(StrCat(PrintableName(name), ": ", state));
    } else if (!CheckModelName(name).ok()) {
      out.skipped.push_back(StrCat(PrintableName(name), ": not a valid model name"));
    } else if (ready.size() >= kMaxKserveModels && !ready.contains(std::string(name))) {
      out.skipped.push_back(StrCat(name, ": more than ", kMaxKserveModels, " models"));
    } else {
      ready.insert(std::string(name));
    }
  }
  out.ready.assign(ready.begin(), ready.end());
  return out;
}

absl::StatusOr<std::string> KserveModelConfig(std::string_view metadata_json,
                                              std::string_view model, uint16_t port,
                                              int instances) {
  simdjson::dom::parser parser;
  absl::StatusOr<element> meta = Parse(parser, metadata_json, "model metadata");
  if (!meta.ok()) return meta.status();
  if (StringOr(*meta, "name") != model) {
    return Invalid(StrCat("model metadata: name is not '", model, "'"));
  }
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "backend" << YAML::Value << std::string(kKserveBackend);
  std::string platform(StringOr(*meta, "platform", "kserve_v2"));
  if (platform.empty() || platform.size() > 64) platform = "kserve_v2";
  out << YAML::Key << "platform" << YAML::Value << YAML::DoubleQuoted << platform;
  out << YAML::Key << "instances" << YAML::Value << std::max(1, instances);
  if (absl::Status s = EmitTensors(out, *meta, "inputs"); !s.ok()) return s;
  if (absl::Status s = EmitTensors(out, *meta, "outputs"); !s.ok()) return s;
  out << YAML::Key << "options" << YAML::Value << YAML::BeginMap << YAML::Key << "port"
      << YAML::Value << YAML::DoubleQuoted << std::to_string(port) << YAML::Key << "model"
      << YAML::Value << YAML::DoubleQuoted << std::string(model) << YAML::EndMap;
  out << YAML::EndMap;
  if (!out.good()) return Invalid(StrCat("model metadata: ", out.GetLastError()));
  return std::string(out.c_str()) + "\n";
}

void RegisterKserveBackend(BackendRegistry& registry, PeerClient* client) {
  registry.Register(std::string(kKserveBackend),
                    [client](const BackendContext& c) -> absl::StatusOr<std::unique_ptr<Backend>> {
                      const std::optional<uint64_t> port = ParseUint(c.config.Option("port"));
                      if (!port || *port == 0 || *port > 65535) {
                        return Invalid("options.port: the KServe v2 server's port (1-65535)");
                      }
                      const std::string model = c.config.Option("model");
                      if (!CheckModelName(model).ok())
                        return Invalid("options.model: not a model name");
                      const std::optional<uint64_t> timeout =
                          ParseUint(c.config.Option("timeout_ms", "30000"));
                      if (!timeout || *timeout == 0 || *timeout > 3600000) {
                        return Invalid("options.timeout_ms: 1 to 3600000");
                      }
                      return std::make_unique<KserveBackend>(client, static_cast<uint16_t>(*port),
                                                             model, static_cast<int>(*timeout));
                    });
}

}  // namespace hivemesh::services
