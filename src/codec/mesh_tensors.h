// The mesh tensor form: how one node hands an inference to another and gets the answer back
// (docs/routing.md, "The mesh tensor form"). A short binary head (names, datatypes, shapes and
// byte sizes at fixed widths, little-endian) followed by the tensors' raw bytes, so that neither
// end parses or writes JSON for a forwarded request. Clients never see it: the node a client
// called speaks KServe v2 to it.
//
//   head:  "HMT" 1 | kind ('Q' request, 'A' answer) | fields of the kind | zero padding to 8
//   data:  the tensors' raw bytes (the KServe v2 raw layout), back to back, in head order
//
//   request fields: id | u16 inputs, each: tensor | u16 outputs asked for, each: name
//   answer fields:  model name | model version | id | served by | u16 outputs, each: tensor
//   tensor: name | u8 datatype | u8 rank | i64 dims[rank] | u64 byte size
//   name, id ...: u16 length | bytes
//
// The data starts 8-byte aligned from the body's start, so a lone tensor (or tensors whose
// sizes are multiples of 8) can be read in place. Decoding validates every size against the
// body and views the body: tensor bytes are never copied.
//
// Pure: no I/O, no clocks. Functions are reentrant.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tensor/inference.h"

namespace hivemesh {

// The Content-Type of a body in the mesh tensor form.
inline constexpr std::string_view kMeshTensorsType = "application/x-hivemesh-tensors";

// The version of the form this node reads and writes (the byte after "HMT"). Between releases
// (docs/deploy.md, "Upgrades"): a node keeps reading the versions before its own, and sends a
// later one only to peers that announce they read it; a node given a version it does not read
// answers 415, which the sender takes as "try another peer".
inline constexpr int kMeshFormVersion = 1;

// The version byte of a body that starts like the mesh tensor form ("HMT" + version), if it does.
std::optional<int> MeshFormVersionOf(std::string_view body);

// A message in the mesh tensor form, ready for a gather write: `head`, then each tensor's bytes.
struct MeshTensorsMessage {
  std::string head;
  std::vector<Tensor> tensors;  // viewed, not copied
  size_t size() const;          // of the whole body
};

// The most tensors (inputs, outputs asked for, outputs answered) one message can count.
inline constexpr size_t kMeshMaxTensors = 65535;

// OK if the request can go in the mesh tensor form; else INVALID_ARGUMENT saying which count is
// over kMeshMaxTensors (the encoder must not be given such a request).
absl::Status MeshRequestFits(const InferRequest& request);
// True if the answer can go in the mesh tensor form (else the serving node answers in KServe v2).
bool MeshAnswerFits(const InferResponse& response);

// The request as a node forwards it: id, inputs and the outputs asked for (their names; the
// answer carries every output raw). Model name, version and deadline travel in the HTTP head.
// The request must fit (MeshRequestFits).
MeshTensorsMessage EncodeMeshRequest(const InferRequest& request);
// Errors are INVALID_ARGUMENT naming what is wrong. Model name/version and deadline are left for
// the caller; every requested output has `binary` false (the choice belongs to the origin's
// client).
absl::StatusOr<InferRequest> DecodeMeshRequest(std::shared_ptr<const std::string> body);

// The answer must fit (MeshAnswerFits).
MeshTensorsMessage EncodeMeshAnswer(const InferResponse& response);
// The per-output `binary` flags are left empty: they belong to the original client.
absl::StatusOr<InferResponse> DecodeMeshAnswer(std::shared_ptr<const std::string> body);

}  // namespace hivemesh
