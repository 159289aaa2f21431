#include "serving/backends/onnx/onnx_backend.h"

#include <climits>
#include <cstring>
#include <filesystem>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "base/strings.h"
#include "opencv2/core.hpp"
#include "opencv2/dnn.hpp"

namespace hivemesh {
namespace {

// cv::Mat supports this many dimensions (CV_MAX_DIM, defined only in the legacy C headers).
constexpr size_t kMaxRank = 32;

// cv::Exception::what() repeats file and line; `err` is the message itself.
std::string CvMessage(const cv::Exception& e) { return e.err.empty() ? e.what() : e.err; }

Shape MatShape(const cv::Mat& m) {
  Shape shape;
  for (int i = 0; i < m.dims; ++i) shape.push_back(m.size[i]);
  return shape;
}

// A Mat header over a tensor's FP32 bytes (no copy; setInput copies into the net).
absl::StatusOr<cv::Mat> BlobFromTensor(const Tensor& t) {
  if (t.type() != DataType::kFp32) {
    return absl::InvalidArgumentError(
        StrCat("input '", t.name(), "': expected FP32, got ", std::string(DataTypeName(t.type()))));
  }
  if (t.shape().empty() || t.shape().size() > kMaxRank) {
    return absl::InvalidArgumentError(
        StrCat("input '", t.name(), "': rank ", t.shape().size(), " is outside 1..", kMaxRank));
  }
  std::vector<int> sizes;
  for (int64_t d : t.shape()) {
    if (d <= 0 || d > INT_MAX) {
      return absl::InvalidArgumentError(StrCat("input '", t.name(), "': shape ",
                                               ShapeString(t.shape()),
                                               " has an empty or too large dimension"));
    }
    sizes.push_back(static_cast<int>(d));
  }
  absl::StatusOr<size_t> bytes = FixedByteSize(t.type(), t.shape());
  if (!bytes.ok() || *bytes != t.data().size()) {
    return absl::InvalidArgumentError(StrCat("input '", t.name(), "': ", t.data().size(),
                                             " bytes of data do not match shape ",
                                             ShapeString(t.shape())));
  }
  if (!t.AlignedFor<float>()) {
    // A binary request body places tensors at any offset; OpenCV reads floats in place.
    cv::Mat copy(static_cast<int>(sizes.size()), sizes.data(), CV_32F);
    std::memcpy(copy.data, t.data().data(), t.data().size());
    return copy;
  }
  return cv::Mat(static_cast<int>(sizes.size()), sizes.data(), CV_32F,
                 const_cast<char*>(t.data().data()));
}

class OnnxBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(const BackendContext& ctx);

  absl::Status Execute(std::span<const Tensor> inputs, std::vector<Tensor>* outputs) override {
    std::vector<cv::Mat> blobs;
    blobs.reserve(input_names_.size());
    for (const std::string& name : input_names_) {
      const Tensor* found = nullptr;
      for (const Tensor& t : inputs) {
        if (t.name() == name) found = &t;
      }
      if (found == nullptr) {
        return absl::InvalidArgumentError(
            StrCat("input '", name, "': missing; the ONNX model needs every input"));
      }
      absl::StatusOr<cv::Mat> blob = BlobFromTensor(*found);
      if (!blob.ok()) return blob.status();
      blobs.push_back(*std::move(blob));
    }

    absl::StatusOr<std::vector<cv::Mat>> outs = Forward(blobs);
    if (!outs.ok()) {
      std::vector<std::string> shapes;
      for (size_t i = 0; i < blobs.size(); ++i) {
        shapes.push_back(StrCat("'", input_names_[i], "' ", ShapeString(MatShape(blobs[i]))));
      }
      return absl::InvalidArgumentError(StrCat("the model cannot run on inputs ",
                                               absl::StrJoin(shapes, ", "), ": ",
                                               outs.status().message()));
    }
    for (size_t i = 0; i < outs->size(); ++i) {
      cv::Mat m = (*outs)[i];
      if (m.type() != CV_32F) m.convertTo(m, CV_32F);
      if (!m.isContinuous()) m = m.clone();
      // The net reuses its output buffers on the next forward, so the bytes are copied out.
      std::string data(reinterpret_cast<const char*>(m.data), m.total() * m.elemSize());
      outputs->push_back(
          Tensor::Owned(output_names_[i], DataType::kFp32, MatShape(m), std::move(data)));
    }
    return absl::OkStatus();
  }

 private:
  OnnxBackend(cv::dnn::Net net, std::vector<std::string> input_names,
              std::vector<std::string> output_names)
      : net_(std::move(net)),
        input_names_(std::move(input_names)),
        output_names_(std::move(output_names)) {}

  // Runs the net on `blobs` (one per input_names_), returning one Mat per output_names_.
  absl::StatusOr<std::vector<cv::Mat>> Forward(const std::vector<cv::Mat>& blobs) {
    try {
      for (size_t i = 0; i < blobs.size(); ++i) net_.setInput(blobs[i], input_names_[i]);
      std::vector<cv::Mat> outs;
      net_.forward(outs, output_names_);
      if (outs.size() != output_names_.size()) {
        return absl::InternalError(StrCat("forward returned ", outs.size(), " outputs for ",
                                          output_names_.size(), " requested"));
      }
      return outs;
    } catch (const cv::Exception& e) {
      return absl::InternalError(CvMessage(e));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("out of memory in forward");
    } catch (const std::exception& e) {
      return absl::InternalError(e.what());
    }
  }

  // Load-time check: names exist in the graph, and (when every input's only variable dimension
  // is the batch) a forward pass on a batch of 1 zeros yields outputs that fit the config.
  absl::Status Validate(const ModelConfig& config);

  cv::dnn::Net net_;
  const std::vector<std::string> input_names_;
  const std::vector<std::string> output_names_;
};

absl::Status OnnxBackend::Validate(const ModelConfig& config) {
  std::vector<std::string> graph_outputs;
  try {
    cv::Ptr<cv::dnn::Layer> input_layer = net_.getLayer(0);
    for (size_t i = 0; i < config.inputs.size(); ++i) {
      if (input_layer->outputNameToIndex(config.inputs[i].name) < 0) {
        return absl::InvalidArgumentError(StrCat("inputs[", i, "].name: '", config.inputs[i].name,
                                                 "' is not an input of the ONNX model"));
      }
    }
    for (const cv::String& name : net_.getUnconnectedOutLayersNames()) {
      graph_outputs.push_back(name);
    }
    for (size_t i = 0; i < config.outputs.size(); ++i) {
      if (net_.getLayerId(config.outputs[i].name) < 0) {
        return absl::InvalidArgumentError(
            StrCat("outputs[", i, "].name: '", config.outputs[i].name,
                   "' is not an output of the ONNX model (its outputs: ",
                   absl::StrJoin(graph_outputs, ", "), ")"));
      }
    }
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(
        StrCat("options.file: cannot inspect the ONNX model: ", CvMessage(e)));
  }

  // The probe needs concrete shapes: only a leading -1 (the batch) is replaced, by 1.
  std::vector<cv::Mat> zeros;
  for (const TensorConfig& in : config.inputs) {
    std::vector<int> sizes;
    for (size_t d = 0; d < in.dims.size(); ++d) {
      if (in.dims[d] == -1 && d == 0) {
        sizes.push_back(1);
      } else if (in.dims[d] > 0 && in.dims[d] <= INT_MAX) {
        sizes.push_back(static_cast<int>(in.dims[d]));
      } else {
        return absl::OkStatus();  // variable non-batch dims: nothing concrete to probe with
      }
    }
    if (sizes.empty() || sizes.size() > kMaxRank) return absl::OkStatus();
    zeros.push_back(cv::Mat::zeros(static_cast<int>(sizes.size()), sizes.data(), CV_32F));
  }
  absl::StatusOr<std::vector<cv::Mat>> outs = Forward(zeros);
  if (!outs.ok()) {
    return absl::InvalidArgumentError(
        StrCat("inputs: the ONNX model does not run on a batch of 1 zeros shaped like the config: ",
               outs.status().message()));
  }
  for (size_t i = 0; i < outs->size(); ++i) {
    Shape expected = config.outputs[i].dims;
    if (!expected.empty() && expected[0] == -1) expected[0] = 1;
    const Shape actual = MatShape((*outs)[i]);
    if (!ShapeMatches(expected, actual)) {
      return absl::InvalidArgumentError(
          StrCat("outputs[", i, "].shape: the model's '", config.outputs[i].name, "' has shape ",
                 ShapeString(actual), " for a batch of 1, which does not fit ",
                 ShapeString(config.outputs[i].dims)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Backend>> OnnxBackend::Create(const BackendContext& ctx) {
  const ModelConfig& config = ctx.config;
  const std::string file = config.Option("file", "model.onnx");
  if (file.empty()) return absl::InvalidArgumentError("options.file: must not be empty");
  std::filesystem::path path(file);
  if (path.is_relative()) path = std::filesystem::path(ctx.version_path) / path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(
        StrCat("options.file: ", path.string(), ": no such model file"));
  }
  if (config.inputs.empty()) return absl::InvalidArgumentError("inputs: the model needs one");
  if (config.outputs.empty()) return absl::InvalidArgumentError("outputs: the model needs one");

  std::vector<std::string> input_names, output_names;
  for (size_t i = 0; i < config.inputs.size(); ++i) {
    if (config.inputs[i].type != DataType::kFp32) {
      return absl::InvalidArgumentError(
          StrCat("inputs[", i, "].datatype: the onnx backend supports FP32 only, got ",
                 std::string(DataTypeName(config.inputs[i].type))));
    }
    input_names.push_back(config.inputs[i].name);
  }
  for (size_t i = 0; i < config.outputs.size(); ++i) {
    if (config.outputs[i].type != DataType::kFp32) {
      return absl::InvalidArgumentError(
          StrCat("outputs[", i, "].datatype: the onnx backend supports FP32 only, got ",
                 std::string(DataTypeName(config.outputs[i].type))));
    }
    output_names.push_back(config.outputs[i].name);
  }

  cv::dnn::Net net;
  try {
    net = cv::dnn::readNetFromONNX(path.string());
    if (net.empty()) {
      return absl::InvalidArgumentError(
          StrCat("options.file: ", path.string(), ": the ONNX model has no layers"));
    }
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  } catch (const cv::Exception& e) {
    return absl::InvalidArgumentError(
        StrCat("options.file: ", path.string(), ": cannot load the ONNX model: ", CvMessage(e)));
  }

  std::unique_ptr<OnnxBackend> backend(
      new OnnxBackend(std::move(net), std::move(input_names), std::move(output_names)));
  if (absl::Status s = backend->Validate(config); !s.ok()) return s;
  return backend;
}

}  // namespace

void RegisterOnnxBackend(BackendRegistry& registry) {
  registry.Register("onnx", OnnxBackend::Create);
}

}  // namespace hivemesh
