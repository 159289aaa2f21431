#include "codec/mesh_tensors.h"

#include <cstring>
#include <limits>

#include "base/strings.h"

namespace hivemesh {
namespace {

constexpr char kMagic[4] = {'H', 'M', 'T', static_cast<char>(kMeshFormVersion)};
constexpr char kRequestKind = 'Q';
constexpr char kAnswerKind = 'A';
constexpr size_t kAlign = 8;

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(StrCat("mesh tensor form: ", what));
}

template <typename T>
void Put(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  out.append(bytes, sizeof(T));
}

// Names and ids longer than a u16 cannot be sent; no model, tensor or node name is that long
// (the HTTP front ends bound them far lower), so the encoder clips rather than fails.
void PutString(std::string& out, std::string_view s) {
  s = s.substr(0, std::numeric_limits<uint16_t>::max());
  Put(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

void PutTensor(std::string& out, const Tensor& t) {
  PutString(out, t.name());
  Put(out, static_cast<uint8_t>(t.type()));
  Put(out, static_cast<uint8_t>(t.shape().size()));
  for (int64_t d : t.shape()) Put(out, d);
  Put(out, static_cast<uint64_t>(t.data().size()));
}

// A u16 count, then each tensor's head.
void PutTensors(std::string& out, const std::vector<Tensor>& tensors) {
  Put(out, static_cast<uint16_t>(tensors.size()));
  for (const Tensor& t : tensors) PutTensor(out, t);
}

size_t TensorHeadSize(const Tensor& t) {
  return 2 + t.name().size() + 2 + 8 * t.shape().size() + 8;
}

void Begin(std::string& out, char kind, size_t estimate) {
  out.reserve(estimate + 5 + kAlign);
  out.append(kMagic, sizeof(kMagic));
  out += kind;
}

void PadHead(std::string& out) { out.append((kAlign - out.size() % kAlign) % kAlign, '\0'); }

// Reads a head from the front of a body; every read checks what is left.
class Reader {
 public:
  Reader() = default;
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  bool Get(T* v) {
    if (bytes_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetString(std::string_view* s) {
    uint16_t n;
    if (!Get(&n) || bytes_.size() - pos_ < n) return false;
    *s = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

struct TensorHead {
  std::string_view name;
  DataType type;
  Shape shape;
  uint64_t size;
};

absl::Status ReadTensorHead(Reader& r, std::string_view kind, size_t index, TensorHead* h) {
  uint8_t type, rank;
  if (!r.GetString(&h->name) || !r.Get(&type) || !r.Get(&rank)) {
    return Invalid(StrCat("the head ends inside ", kind, " ", index));
  }
  if (type >= kNumDataTypes) {
    return Invalid(StrCat(kind, " '", h->name, "' has an unknown datatype (", int{type}, ")"));
  }
  if (rank > kMaxRank) return Invalid(StrCat(kind, " '", h->name, "' has rank ", int{rank}));
  h->type = static_cast<DataType>(type);
  h->shape.resize(rank);
  for (int64_t& d : h->shape) {
    if (!r.Get(&d)) return Invalid(StrCat("the head ends inside ", kind, " '", h->name, "'"));
  }
  if (!r.Get(&h->size)) return Invalid(StrCat("the head ends inside ", kind, " '", h->name, "'"));
  return absl::OkStatus();
}

// Checks the body's magic and kind; the reader is then past them.
absl::Status ReadStart(const std::shared_ptr<const std::string>& body, char kind, Reader& r) {
  if (body == nullptr) return Invalid("the body is empty");
  r = Reader(*body);
  char magic[sizeof(kMagic)];
  char got;
  if (!r.Get(&magic) || !r.Get(&got)) return Invalid("the body is too short");
  if (std::memcmp(magic, kMagic, 3) != 0) return Invalid("the body is not in this form");
  if (magic[3] != kMagic[3]) {
    return Invalid(StrCat("version ", int{magic[3]}, " is not known (this node reads version ",
                          int{kMagic[3]}, ")"));
  }
  if (got != kind) {
    return Invalid(kind == kRequestKind ? "an answer was sent as a request"
                                        : "a request was sent as an answer");
  }
  return absl::OkStatus();
}

// The tensors of `heads`, viewing the data that follows the padded head in `body`.
absl::StatusOr<std::vector<Tensor>> ViewTensors(const std::shared_ptr<const std::string>& body,
                                                size_t head_end, std::vector<TensorHead>& heads) {
  const std::string_view all(*body);
  size_t pos = head_end + (kAlign - head_end % kAlign) % kAlign;
  if (pos > all.size()) return Invalid("the body ends inside the head's padding");
  std::vector<Tensor> tensors;
  tensors.reserve(heads.size());
  for (TensorHead& h : heads) {
    if (h.size > all.size() - pos) {
      return Invalid(StrCat("the data of '", h.name, "' runs past the end of the body"));
    }
    Tensor t = Tensor::View(std::string(h.name), h.type, std::move(h.shape), body,
                            all.substr(pos, static_cast<size_t>(h.size)));
    pos += static_cast<size_t>(h.size);
    absl::Status valid = ValidateTensorData(t);
    if (!valid.ok()) return Invalid(MessageOf(valid));
    tensors.push_back(std::move(t));
  }
  if (pos != all.size()) return Invalid("bytes follow the last tensor");
  return tensors;
}

absl::Status ReadTensorHeads(Reader& r, std::string_view kind, std::vector<TensorHead>* heads) {
  uint16_t n;
  if (!r.Get(&n)) return Invalid(StrCat("the head ends before the ", kind, " count"));
  // Grown as heads are read, not sized by the count: a short body cannot make it allocate much.
  for (size_t i = 0; i < n; ++i) {
    absl::Status s = ReadTensorHead(r, kind, i, &heads->emplace_back());
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MeshRequestFits(const InferRequest& request) {
  if (request.inputs.size() > kMeshMaxTensors) {
    return absl::InvalidArgumentError(StrCat("a request a node forwards may have at most ",
                                             kMeshMaxTensors, " inputs; this one has ",
                                             request.inputs.size()));
  }
  if (request.outputs.size() > kMeshMaxTensors) {
    return absl::InvalidArgumentError(StrCat("a request a node forwards may ask for at most ",
                                             kMeshMaxTensors, " outputs; this one asks for ",
                                             request.outputs.size()));
  }
  return absl::OkStatus();
}

bool MeshAnswerFits(const InferResponse& response) {
  return response.outputs.size() <= kMeshMaxTensors;
}

size_t MeshTensorsMessage::size() const {
  size_t n = head.size();
  for (const Tensor& t : tensors) n += t.data().size();
  return n;
}

std::optional<int> MeshFormVersionOf(std::string_view body) {
  if (body.size() < sizeof(kMagic) || std::memcmp(body.data(), kMagic, 3) != 0) return std::nullopt;
  return static_cast<uint8_t>(body[3]);
}

MeshTensorsMessage EncodeMeshRequest(const InferRequest& request) {
  MeshTensorsMessage m;
  size_t estimate = 2 + request.id.size() + 4;
  for (const Tensor& t : request.inputs) estimate += TensorHeadSize(t);
  for (const RequestedOutput& o : request.outputs) estimate += 2 + o.name.size();
  std::string& h = m.head;
  Begin(h, kRequestKind, estimate);
  PutString(h, request.id);
  PutTensors(h, request.inputs);
  Put(h, static_cast<uint16_t>(request.outputs.size()));
  for (const RequestedOutput& o : request.outputs) PutString(h, o.name);
  PadHead(h);
  m.tensors = request.inputs;
  return m;
}

absl::StatusOr<InferRequest> DecodeMeshRequest(std::shared_ptr<const std::string> body) {
  Reader r;
  absl::Status s = ReadStart(body, kRequestKind, r);
  if (!s.ok()) return s;
  InferRequest req;
  std::string_view id;
  if (!r.GetString(&id)) return Invalid("the head ends inside the id");
  req.id = std::string(id);
  std::vector<TensorHead> heads;
  s = ReadTensorHeads(r, "input", &heads);
  if (!s.ok()) return s;
  uint16_t outputs;
  if (!r.Get(&outputs)) return Invalid("the head ends before the output count");
  for (size_t i = 0; i < outputs; ++i) {
    std::string_view name;
    if (!r.GetString(&name)) return Invalid("the head ends inside an output's name");
    req.outputs.push_back({std::string(name), false});
  }
  absl::StatusOr<std::vector<Tensor>> inputs = ViewTensors(body, r.pos(), heads);
  if (!inputs.ok()) return inputs.status();
  req.inputs = *std::move(inputs);
  return req;
}

MeshTensorsMessage EncodeMeshAnswer(const InferResponse& response) {
  MeshTensorsMessage m;
  size_t estimate = 8 + response.model_name.size() + response.model_version.size() +
                    response.id.size() + response.served_by.size() + 2;
  for (const Tensor& t : response.outputs) estimate += TensorHeadSize(t);
  std::string& h = m.head;
  Begin(h, kAnswerKind, estimate);
  PutString(h, response.model_name);
  PutString(h, response.model_version);
  PutString(h, response.id);
  PutString(h, response.served_by);
  PutTensors(h, response.outputs);
  PadHead(h);
  m.tensors = response.outputs;
  return m;
}

absl::StatusOr<InferResponse> DecodeMeshAnswer(std::shared_ptr<const std::string> body) {
  Reader r;
  absl::Status s = ReadStart(body, kAnswerKind, r);
  if (!s.ok()) return s;
  InferResponse resp;
  std::string_view name, version, id, served_by;
  if (!r.GetString(&name) || !r.GetString(&version) || !r.GetString(&id) ||
      !r.GetString(&served_by)) {
    return Invalid("the head ends inside the answer's names");
  }
  resp.model_name = std::string(name);
  resp.model_version = std::string(version);
  resp.id = std::string(id);
  resp.served_by = std::string(served_by);
  std::vector<TensorHead> heads;
  s = ReadTensorHeads(r, "output", &heads);
  if (!s.ok()) return s;
  absl::StatusOr<std::vector<Tensor>> outputs = ViewTensors(body, r.pos(), heads);
  if (!outputs.ok()) return outputs.status();
  resp.outputs = *std::move(outputs);
  return resp;
}

}  // namespace hivemesh
