// Helpers shared by the backend tests: finding the source tree, loading a committed model
// config, and building request tensors.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "serving/model_config.h"
#include "tensor/tensor.h"

namespace hivemesh::testing_util {

// The source tree, from HIVEMESH_SOURCE_DIR (set by hivemesh_test for ctest). Aborts loudly when
// unset: silently skipping would hide that the data-driven tests did not run.
inline std::string SourceDir() {
  const char* dir = std::getenv("HIVEMESH_SOURCE_DIR");
  if (dir == nullptr || *dir == '\0') {
    std::fprintf(stderr,
                 "HIVEMESH_SOURCE_DIR is not set; run through ctest or export it to the "
                 "hivemesh source tree\n");
    std::abort();
  }
  return dir;
}

// <source>/models/<model>.
inline std::string ModelDir(std::string_view model) {
  return SourceDir() + "/models/" + std::string(model);
}

// Parses the committed <source>/models/<model>/config.yaml.
inline absl::StatusOr<ModelConfig> LoadModelConfig(std::string_view model) {
  const std::string path = ModelDir(model) + "/config.yaml";
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return ParseModelConfig(text.str(), model, path);
}

// A BYTES tensor of shape [1] holding `element`.
inline Tensor BytesTensor(std::string name, std::string_view element) {
  std::string raw;
  AppendBytesElement(raw, element);
  return Tensor::Owned(std::move(name), DataType::kBytes, {1}, std::move(raw));
}

// A baseline greyscale JPEG declaring `width` x `height` whose scan has a few bytes of data: with
// one-bit Huffman codes every zero bit is a flat block, and a decoder out of data goes on with
// zeros, so it fills the whole frame.
inline std::string JpegDeclaring(uint16_t width, uint16_t height) {
  auto segment = [](unsigned char marker, std::string payload) {
    std::string out = {'\xFF', static_cast<char>(marker)};
    const size_t n = payload.size() + 2;
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xFF);
    return out + payload;
  };
  const std::string counts = std::string("\x01", 1) + std::string(15, '\0');
  std::string sof = {8,
                     static_cast<char>(height >> 8),
                     static_cast<char>(height & 0xFF),
                     static_cast<char>(width >> 8),
                     static_cast<char>(width & 0xFF),
                     1,
                     1,
                     0x11,
                     0};
  return std::string("\xFF\xD8") + segment(0xDB, std::string(1, '\0') + std::string(64, '\x01')) +
         segment(0xC0, sof) +
         segment(0xC4, std::string(1, '\0') + counts + std::string(1, '\0') + "\x10" + counts +
                           std::string(1, '\0')) +
         segment(0xDA, std::string("\x01\x01\x00\x00\x3f\x00", 6)) + std::string(64, '\0') +
         "\xFF\xD9";
}

// The output named `name`, or nullptr.
inline const Tensor* FindTensor(const std::vector<Tensor>& tensors, std::string_view name) {
  for (const Tensor& t : tensors) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

}  // namespace hivemesh::testing_util
