// Decoding speed of KServe v2 REST infer bodies: a 1 MiB FP32 tensor as JSON (flat and nested)
// and as binary. The peer is simdjson's own parse of the same JSON text, the floor any JSON
// decoder built on it pays; the ratio shows what tensor conversion adds on top. Then encoding
// the same tensor as a JSON answer, against std::to_chars writing the same values.
//
//   build/release/bench/codec_bench [--iterations N]
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "codec/infer_codec.h"

namespace {

using Clock = std::chrono::steady_clock;

double MedianSeconds(int iterations, const std::function<void()>& fn) {
  std::vector<double> samples;
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    fn();
    samples.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 30;
  if (argc == 3 && std::strcmp(argv[1], "--iterations") == 0) iterations = std::atoi(argv[2]);

  constexpr size_t kFloats = (1 << 20) / sizeof(float);  // a 1 MiB tensor
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> values(kFloats);
  for (float& v : values) v = dist(rng);

  std::string flat = R"({"inputs":[{"name":"x","shape":[512,512],"datatype":"FP32","data":[)";
  std::string nested = R"({"inputs":[{"name":"x","shape":[512,512],"datatype":"FP32","data":[)";
  char buf[32];
  for (size_t i = 0; i < kFloats; ++i) {
    const int n = std::snprintf(buf, sizeof buf, "%.7g", values[i]);
    if (i) flat += ',';
    flat.append(buf, n);
    if (i % 512 == 0)
      nested += (i ? "],[" : "[");
    else
      nested += ',';
    nested.append(buf, n);
  }
  flat += "]}]}";
  nested += "]]}]}";

  const std::string header =
      R"({"inputs":[{"name":"x","shape":[512,512],"datatype":"FP32","parameters":{"binary_data_size":1048576}}]})";
  std::string binary = header;
  binary.append(reinterpret_cast<const char*>(values.data()), kFloats * sizeof(float));

  auto flat_body = std::make_shared<const std::string>(flat);
  auto nested_body = std::make_shared<const std::string>(nested);
  auto binary_body = std::make_shared<const std::string>(binary);

  bool ok = true;
  const void* binary_data = nullptr;
  const double t_flat = MedianSeconds(iterations, [&] {
    auto r = hivemesh::DecodeInferRequest(flat_body, std::nullopt, nullptr);
    ok = ok && r.ok() && r->request.inputs[0].data().size() == kFloats * 4;
  });
  const double t_nested = MedianSeconds(iterations, [&] {
    auto r = hivemesh::DecodeInferRequest(nested_body, std::nullopt, nullptr);
    ok = ok && r.ok() && r->request.inputs[0].data().size() == kFloats * 4;
  });
  const double t_binary = MedianSeconds(iterations, [&] {
    auto r = hivemesh::DecodeInferRequest(binary_body, header.size(), nullptr);
    ok = ok && r.ok();
    if (ok) binary_data = r->request.inputs[0].data().data();
  });
  simdjson::dom::parser parser;
  const double t_simdjson = MedianSeconds(iterations, [&] {
    simdjson::dom::element e;
    ok = ok && parser.parse(flat).get(e) == simdjson::SUCCESS;
  });
  // Encoding the same tensor as a JSON answer. The peer is std::to_chars writing the same values,
  // comma-separated, into one buffer: the floor any encoder of the shortest texts pays.
  hivemesh::InferResponse answer;
  answer.model_name = "m";
  answer.outputs.push_back(hivemesh::Tensor::Owned(
      "y", hivemesh::DataType::kFp32, {512, 512},
      std::string(reinterpret_cast<const char*>(values.data()), kFloats * sizeof(float))));
  size_t encoded_size = 0;
  const double t_encode = MedianSeconds(
      iterations, [&] { encoded_size = hivemesh::EncodeInferResponse(answer).json.size(); });
  std::string floor_text(kFloats * 17, '\0');
  size_t floor_size = 0;
  const double t_to_chars = MedianSeconds(iterations, [&] {
    char* p = floor_text.data();
    for (size_t i = 0; i < kFloats; ++i) {
      if (i > 0) *p++ = ',';
      p = std::to_chars(p, p + 16, values[i]).ptr;
    }
    floor_size = static_cast<size_t>(p - floor_text.data());
  });
  ok = ok && encoded_size > floor_size;
  if (!ok) {
    std::fprintf(stderr, "decode or encode failed\n");
    return 1;
  }
  const bool zero_copy = binary_data == binary_body->data() + header.size();

  const double mib = 1.0 / (1 << 20);
  const double tensor_mb = kFloats * 4 / 1e6;
  std::printf("1 MiB FP32 tensor (%zu values), median of %d runs\n", kFloats, iterations);
  std::printf("%-26s %10s %12s %14s %14s\n", "decode", "ms", "JSON MiB", "JSON MB/s",
              "tensor MB/s");
  auto row = [&](const char* name, double t, size_t json_bytes) {
    std::printf("%-26s %10.3f %12.2f %14.0f %14.0f\n", name, t * 1e3, json_bytes * mib,
                json_bytes / 1e6 / t, tensor_mb / t);
  };
  row("hivemesh JSON (flat)", t_flat, flat.size());
  row("hivemesh JSON (nested)", t_nested, nested.size());
  row("simdjson parse only (peer)", t_simdjson, flat.size());
  row("hivemesh binary", t_binary, header.size());
  std::printf("%-26s %10s %12s %14s %14s\n", "encode", "ms", "JSON MiB", "JSON MB/s",
              "tensor MB/s");
  row("hivemesh JSON answer", t_encode, encoded_size);
  row("std::to_chars only (peer)", t_to_chars, floor_size);
  std::printf("binary path views the body without copying: %s\n", zero_copy ? "yes" : "NO");
  std::printf("JSON decode time / simdjson parse time: %.2f\n", t_flat / t_simdjson);
  std::printf("JSON encode time / std::to_chars time: %.2f\n", t_encode / t_to_chars);
  std::printf(
      "RESULT json_flat_mb_s=%.0f json_nested_mb_s=%.0f json_tensor_mb_s=%.0f "
      "simdjson_parse_mb_s=%.0f ratio_vs_simdjson=%.2f binary_tensor_mb_s=%.0f "
      "binary_zero_copy=%d json_encode_tensor_mb_s=%.0f to_chars_tensor_mb_s=%.0f "
      "encode_ratio_vs_to_chars=%.2f\n",
      flat.size() / 1e6 / t_flat, nested.size() / 1e6 / t_nested, tensor_mb / t_flat,
      flat.size() / 1e6 / t_simdjson, t_flat / t_simdjson, tensor_mb / t_binary, zero_copy ? 1 : 0,
      tensor_mb / t_encode, tensor_mb / t_to_chars, t_encode / t_to_chars);
  return zero_copy ? 0 : 1;
}
