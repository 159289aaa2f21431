// libFuzzer target for the KServe v2 REST request decoder (and, for what it accepts, the response
// encoder). The first byte picks how the body is framed: plain JSON, JSON header + binary data
// (header length from the next two bytes), or a raw single-input body.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "api/codec/infer_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t mode = data[0] % 3;
  const uint64_t header = static_cast<uint64_t>(data[1]) | (static_cast<uint64_t>(data[2]) << 8);
  auto body =
      std::make_shared<const std::string>(reinterpret_cast<const char*>(data + 3), size - 3);

  std::optional<uint64_t> header_length;
  if (mode == 1) header_length = header;
  if (mode == 2) header_length = 0;
  static const hivemesh::TensorConfig raw_input{"x", hivemesh::DataType::kFp32, {-1, 2}, false};
  static const hivemesh::TensorConfig raw_bytes{"s", hivemesh::DataType::kBytes, {1}, false};
  const hivemesh::TensorConfig* raw = (header & 1) ? &raw_input : &raw_bytes;

  // The same bytes as a peer's response (the forwarding path decodes those).
  absl::StatusOr<hivemesh::InferResponse> response_in =
      hivemesh::DecodeInferResponse(body, mode == 1 ? header_length : std::nullopt);
  if (!response_in.ok() && response_in.status().message().empty()) __builtin_trap();
  absl::StatusOr<hivemesh::DecodedInferRequest> decoded =
      hivemesh::DecodeInferRequest(body, header_length, raw);
  if (!decoded.ok()) {
    if (decoded.status().message().empty()) __builtin_trap();  // every error says why
    return 0;
  }
  // Whatever was accepted is consistent and can be encoded back.
  hivemesh::InferResponse response;
  response.model_name = "fuzz";
  response.id = decoded->request.id;
  for (const hivemesh::Tensor& t : decoded->request.inputs) {
    if (!hivemesh::ValidateTensorData(t).ok()) __builtin_trap();
    response.outputs.push_back(t);
    response.binary.push_back(t.data().size() % 2 == 0);
  }
  hivemesh::EncodedInferResponse enc = hivemesh::EncodeInferResponse(response);
  if (enc.json.empty()) __builtin_trap();
  // Forwarded on, it decodes back to the same tensors.
  hivemesh::EncodedInferRequest fwd = hivemesh::EncodeForwardRequest(decoded->request);
  std::string wire = fwd.json;
  for (const hivemesh::Tensor& t : fwd.binary) wire.append(t.data());
  absl::StatusOr<hivemesh::DecodedInferRequest> again = hivemesh::DecodeInferRequest(
      std::make_shared<const std::string>(std::move(wire)), fwd.json.size(), nullptr);
  if (!again.ok() || again->request.inputs.size() != decoded->request.inputs.size()) {
    __builtin_trap();
  }
  for (size_t i = 0; i < again->request.inputs.size(); ++i) {
    if (again->request.inputs[i].data() != decoded->request.inputs[i].data()) __builtin_trap();
  }
  return 0;
}
