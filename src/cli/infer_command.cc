#include "cli/infer_command.h"

#include <chrono>
#include <cstdio>
#include <memory>

#include "base/strings.h"
#include "cli/cli_flags.h"
#include "cli/infer_output.h"
#include "cli/infer_request.h"
#include "cli/mesh_view.h"
#include "cli/model_metadata.h"

namespace hivemesh::cli {
namespace {

// The model's metadata from `client`'s node or, if it does not host the model, from a ready
// member that does.
absl::StatusOr<ModelMetadata> FetchMetadata(HttpClient& client, const InferFlags& flags) {
  const std::string path = ModelPath(flags.model, flags.version);
  absl::StatusOr<HttpResult> here = client.Request("GET", path);
  if (!here.ok()) return here.status();
  if (here->status == 200) return ParseModelMetadata(here->body);
  const absl::Status not_here = NodeAnswered(client.host_port(), *here);
  if (here->status != 404) return not_here;
  absl::StatusOr<HttpResult> reply = Call(client, "GET", "/v1/mesh/members");
  if (!reply.ok()) return not_here;
  absl::StatusOr<std::vector<Member>> members = ParseMembers(reply->body);
  if (!members.ok()) return not_here;
  bool hosted = false;
  for (const Member& m : *members) {
    if (!m.serving() || m.api_address.empty() || m.api_address == client.host_port()) continue;
    for (const ModelAdvert& a : m.models) {
      if (a.name != flags.model || !a.ready) continue;
      hosted = true;
      HttpClient peer(m.api_address, client.timeout_ms());
      absl::StatusOr<HttpResult> there = peer.Request("GET", path);
      if (there.ok() && there->status == 200) return ParseModelMetadata(there->body);
    }
  }
  if (hosted) {
    return absl::UnknownError(StrCat(not_here.message(),
                                     "; no member of the mesh that hosts it answered for its "
                                     "metadata (use --json to send a whole request)"));
  }
  // With --version, the node may host the model but not that version: its message says so.
  if (!flags.version.empty()) return not_here;
  return absl::UnknownError(StrCat(not_here.message(), "; no member of the mesh hosts it"));
}

struct PreparedRequest {
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

absl::StatusOr<PreparedRequest> Prepare(HttpClient& client, const InferFlags& flags) {
  const int given = !flags.image.empty() + !flags.json.empty() + !flags.data.empty();
  if (given != 1) {
    return absl::InvalidArgumentError(
        "give exactly one of --image FILE, --json FILE or --data VALUES (see --help)");
  }
  PreparedRequest out;
  if (!flags.json.empty()) {
    absl::StatusOr<std::string> body = ReadInputFile(flags.json);
    if (!body.ok()) return body.status();
    out.body = *std::move(body);
    out.headers.emplace_back("Content-Type", "application/json");
    return out;
  }
  std::string image;
  if (!flags.image.empty()) {
    absl::StatusOr<std::string> bytes = ReadInputFile(flags.image);
    if (!bytes.ok()) return bytes.status();
    if (!IsJpegOrPng(*bytes)) {
      return absl::InvalidArgumentError(
          StrCat("--image: '", flags.image, "' is not a JPEG or PNG file"));
    }
    image = *std::move(bytes);
  }
  absl::StatusOr<ModelMetadata> metadata = FetchMetadata(client, flags);
  if (!metadata.ok()) return metadata.status();
  if (!flags.data.empty()) {
    absl::StatusOr<std::string> body = BuildDataRequest(*metadata, flags.data, flags.input);
    if (!body.ok()) return body.status();
    out.body = *std::move(body);
    out.headers.emplace_back("Content-Type", "application/json");
    return out;
  }
  absl::StatusOr<BinaryRequestBody> binary = BuildImageRequest(*metadata, image, flags.input);
  if (!binary.ok()) return binary.status();
  out.body = std::move(binary->body);
  out.headers.emplace_back("Content-Type", "application/octet-stream");
  out.headers.emplace_back("Inference-Header-Content-Length", StrCat(binary->header_length));
  return out;
}

}  // namespace

CLI::App* AddInferCommand(CLI::App& app, InferFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "infer", "run one inference through a node (served there or forwarded to a peer)");
  cmd->add_option("model", flags.model, "the model's name")->required();
  CLI::Option* image =
      cmd->add_option("--image", flags.image,
                      "a JPEG or PNG file, sent as the model's BYTES input (binary extension)");
  CLI::Option* json = cmd->add_option(
      "--json", flags.json, "a whole KServe v2 request body, sent as is ('-': standard input)");
  CLI::Option* data = cmd->add_option(
      "--data", flags.data,
      "values for the model's one numeric input: 1,2,3 or a JSON array (nested for several "
      "variable dimensions); variable dimensions are filled in from the number of values");
  image->excludes(json)->excludes(data);
  json->excludes(data);
  cmd->add_option("--input", flags.input,
                  "the input --image or --data fills, when the model has several");
  cmd->add_option("--version", flags.version, "the model version [default: the node's latest]");
  AddNodeFlags(cmd, flags.node,
               "  hivemesh infer identity --data 1,2,3\n"
               "  hivemesh infer vibration-anomaly --data \"$(cat window.json)\" -o json\n"
               "  hivemesh infer people-detector --image frame.jpg --node 10.0.0.7:8000\n"
               "  hivemesh infer identity --json request.json --timeout-ms 200\n"
               "--timeout-ms is also the request's deadline at the node (Inference-Timeout-Ms);\n"
               "the CLI waits 500 ms more for the node's answer.");
  return cmd;
}

int RunInfer(const InferFlags& flags) {
  HttpClient client(flags.node.node, flags.node.timeout_ms);
  absl::StatusOr<PreparedRequest> request = Prepare(client, flags);
  if (!request.ok()) return Fail("infer", request.status());
  request->headers.emplace_back("Inference-Timeout-Ms", StrCat(flags.node.timeout_ms));
  client.set_timeout_ms(flags.node.timeout_ms + kInferAnswerGraceMs);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<HttpResult> reply =
      Call(client, "POST", ModelPath(flags.model, flags.version, "/infer"), request->body,
           request->headers);
  const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
  if (!reply.ok()) return Fail("infer", reply.status());
  if (flags.node.output == "json") {
    std::fwrite(reply->body.data(), 1, reply->body.size(), stdout);
    if (reply->body.empty() || reply->body.back() != '\n') std::fputc('\n', stdout);
    return kExitOk;
  }
  std::optional<uint64_t> header_length;
  if (const std::string h = reply->header("inference-header-content-length"); !h.empty()) {
    header_length = std::strtoull(h.c_str(), nullptr, 10);
  }
  absl::StatusOr<InferResponse> response = ReadInferResponse(std::move(reply->body), header_length);
  if (!response.ok()) return Fail("infer", response.status());
  std::fputs(FormatInferResult(*response, reply->header("hivemesh-served-by"), latency).c_str(),
             stdout);
  return kExitOk;
}

}  // namespace hivemesh::cli
