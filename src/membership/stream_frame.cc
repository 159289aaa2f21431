#include "membership/stream_frame.h"

#include <algorithm>
#include <utility>

#include "base/strings.h"

namespace hivemesh::membership {
namespace {

constexpr char kMagic0 = 'H';
constexpr char kMagic1 = 'M';
constexpr char kPlaintext = 'P';
constexpr char kSealed = 'S';
constexpr char kNotice = 'E';
constexpr std::string_view kNoticeFrame =
    "HM\x02"
    "Ethis mesh requires gossip encryption\n";

void PutU16(std::string& out, size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

void PutU32(std::string& out, size_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

uint32_t GetU32(std::string_view in) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    if (!out.empty()) out.push_back(' ');
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

}  // namespace

std::string_view EncryptionRequiredNotice() { return kNoticeFrame; }

std::string EncodeFrame(Envelope& envelope, std::string_view payload, const Recipient& to,
                        int64_t unix_ms, uint64_t* counter) {
  std::string out{kMagic0, kMagic1, static_cast<char>(kStreamFramingVersion)};
  if (!envelope.encrypted()) {
    if (counter != nullptr) *counter = 0;
    out.reserve(kPreambleBytes + 4 + payload.size());
    out.push_back(kPlaintext);
    PutU32(out, payload.size());
    out.append(payload);
    return out;
  }
  std::string length;
  PutU32(length, payload.size());
  uint64_t head_counter = 0;
  const std::string head = envelope.Wrap(length, to, unix_ms, &head_counter);
  if (counter != nullptr) *counter = head_counter;
  const size_t chunks = (payload.size() + kChunkBytes - 1) / kChunkBytes;
  out.reserve(kPreambleBytes + 2 + head.size() + payload.size() +
              chunks * Envelope::kChunkOverhead);
  out.push_back(kSealed);
  PutU16(out, head.size());
  out.append(head);
  for (size_t i = 0; i < chunks; ++i) {
    out.append(envelope.SealChunk(head_counter, static_cast<uint32_t>(i),
                                  payload.substr(i * kChunkBytes, kChunkBytes)));
  }
  return out;
}

FrameReader::FrameReader(size_t max_frame_bytes, MemoryBudget::Reservation budget)
    : max_frame_bytes_(max_frame_bytes), budget_(std::move(budget)) {}

absl::Status FrameReader::Fail(DropReason reason, absl::Status status, DropCounters& drops,
                               DropReason* why) {
  drops.Add(reason);
  if (why != nullptr) *why = reason;
  state_ = State::kDone;
  return status;
}

size_t FrameReader::ChunkWant() const {
  return std::min(kChunkBytes, length_ - body_.size()) + Envelope::kChunkOverhead;
}

absl::StatusOr<std::span<char>> FrameReader::NextRead(DropCounters& drops, DropReason* why) {
  switch (state_) {
    case State::kPlainBody: {
      // Grow with what arrives: at most kChunkBytes per read, the capacity doubling, each step
      // reserved from the budget before it is allocated.
      const size_t have = body_.size();
      want_ = std::min(kChunkBytes, length_ - have);
      if (have + want_ > body_.capacity()) {
        const size_t target =
            std::max(have + want_, std::min(length_, std::max(kChunkBytes, 2 * body_.capacity())));
        if (target > budget_.bytes()) {
          absl::Status grown = budget_.Grow(target - budget_.bytes());
          if (!grown.ok()) {
            return Fail(DropReason::kBudget,
                        absl::ResourceExhaustedError(StrCat(
                            "a plaintext gossip frame of ", length_,
                            " bytes does not fit in the node's budget for buffered gossip frames "
                            "(gossip_buffer_mb): ",
                            MessageOf(grown))),
                        drops, why);
          }
        }
        body_.reserve(target);
      }
      body_.resize(have + want_);
      return std::span<char>(body_.data() + have, want_);
    }
    case State::kChunk:
      want_ = ChunkWant();
      chunk_.resize(want_);
      return std::span<char>(chunk_.data(), want_);
    case State::kDone:
      return Fail(DropReason::kBadFrame, absl::FailedPreconditionError("the frame is complete"),
                  drops, why);
    default:
      // Preamble, lengths, the sealed head, the notice's text: want_ was set by Consume().
      head_.resize(want_);
      return std::span<char>(head_.data(), want_);
  }
}

absl::StatusOr<FrameReader::Result> FrameReader::StartBody(size_t length, DropCounters& drops,
                                                           DropReason* why) {
  head_done_ = true;
  if (length > max_frame_bytes_) {
    return Fail(DropReason::kFrameTooLarge,
                absl::InvalidArgumentError(StrCat("a gossip frame of ", length,
                                                  " bytes is over the limit of ", max_frame_bytes_,
                                                  " bytes (max_tcp_frame_bytes)")),
                drops, why);
  }
  length_ = length;
  if (length == 0) {
    state_ = State::kDone;
    return Result::kFrame;
  }
  if (state_ == State::kPlainLength) {
    state_ = State::kPlainBody;
    return Result::kNeedMore;
  }
  // Sealed: the head authenticated the length, so the body and one chunk are reserved whole.
  absl::Status grown = budget_.Grow(length + ChunkWant());
  if (!grown.ok()) {
    return Fail(DropReason::kBudget,
                absl::ResourceExhaustedError(
                    StrCat("a gossip frame of ", length,
                           " bytes does not fit in the node's budget for buffered gossip frames "
                           "(gossip_buffer_mb): ",
                           MessageOf(grown))),
                drops, why);
  }
  body_.reserve(length);
  chunk_.reserve(ChunkWant());
  state_ = State::kChunk;
  return Result::kNeedMore;
}

absl::StatusOr<FrameReader::Result> FrameReader::Consume(Envelope& envelope,
                                                         const Recipient& expected, int64_t unix_ms,
                                                         DropCounters& drops, DropReason* why) {
  bytes_read_ += want_;
  switch (state_) {
    case State::kPreamble: {
      if (head_[0] != kMagic0 || head_[1] != kMagic1 ||
          static_cast<uint8_t>(head_[2]) != kStreamFramingVersion) {
        return Fail(DropReason::kBadFrame,
                    absl::InvalidArgumentError(StrCat("not a gossip frame of TCP framing version ",
                                                      int{kStreamFramingVersion}, " (first bytes ",
                                                      Hex(head_),
                                                      "): a node of another version, or not "
                                                      "gossip")),
                    drops, why);
      }
      const char kind = head_[3];
      if (kind == kPlaintext) {
        if (envelope.encrypted()) {
          return Fail(DropReason::kUnauthenticated,
                      absl::UnauthenticatedError(
                          "a plaintext gossip frame, and this node requires gossip encryption"),
                      drops, why);
        }
        state_ = State::kPlainLength;
        want_ = 4;
      } else if (kind == kSealed) {
        if (!envelope.encrypted()) {
          return Fail(
              DropReason::kBadFrame,
              absl::InvalidArgumentError("a sealed gossip frame, and this node has no gossip keys"),
              drops, why);
        }
        state_ = State::kSealedHeadLength;
        want_ = 2;
      } else if (kind == kNotice) {
        state_ = State::kNoticeText;
        want_ = kNoticeFrame.size() - kPreambleBytes;
      } else {
        return Fail(DropReason::kBadFrame,
                    absl::InvalidArgumentError(
                        StrCat("a gossip frame of unknown kind ", Hex(head_.substr(3, 1)))),
                    drops, why);
      }
      return Result::kNeedMore;
    }
    case State::kPlainLength:
      return StartBody(GetU32(head_), drops, why);
    case State::kPlainBody:
      if (body_.size() < length_) return Result::kNeedMore;
      state_ = State::kDone;
      return Result::kFrame;
    case State::kSealedHeadLength: {
      const size_t n =
          (size_t{static_cast<uint8_t>(head_[0])} << 8) | static_cast<uint8_t>(head_[1]);
      if (n < kMinSealedHead || n > kMaxSealedHead) {
        return Fail(DropReason::kUnauthenticated,
                    absl::UnauthenticatedError(
                        StrCat("a sealed gossip frame head of ", n, " bytes, which no key seals")),
                    drops, why);
      }
      state_ = State::kSealedHead;
      want_ = n;
      return Result::kNeedMore;
    }
    case State::kSealedHead: {
      absl::StatusOr<Opened> head = envelope.Unwrap(head_, expected, unix_ms, why, kMaxSealedHead);
      if (!head.ok()) {
        state_ = State::kDone;
        return head.status();  // counted by the envelope
      }
      if (head->payload.size() != 4) {
        return Fail(
            DropReason::kMalformed,
            absl::InvalidArgumentError(StrCat("an authenticated frame head of ",
                                              head->payload.size(), " payload bytes instead of 4")),
            drops, why);
      }
      head_opened_.sender = head->sender;
      head_opened_.counter = head->counter;
      return StartBody(GetU32(head->payload), drops, why);
    }
    case State::kChunk: {
      absl::StatusOr<std::string> data =
          envelope.OpenChunk(chunk_, head_opened_.sender, head_opened_.counter, chunk_index_, why);
      if (!data.ok()) {
        state_ = State::kDone;
        return data.status();  // counted by the envelope
      }
      if (data->size() != want_ - Envelope::kChunkOverhead) {
        return Fail(DropReason::kMalformed,
                    absl::InvalidArgumentError("an authenticated chunk of the wrong size"), drops,
                    why);
      }
      body_.append(*data);
      ++chunk_index_;
      if (body_.size() < length_) return Result::kNeedMore;
      state_ = State::kDone;
      return Result::kFrame;
    }
    case State::kNoticeText:
      if (head_ != kNoticeFrame.substr(kPreambleBytes)) {
        return Fail(DropReason::kBadFrame,
                    absl::InvalidArgumentError("a gossip notice frame with unknown text"), drops,
                    why);
      }
      state_ = State::kDone;
      return Result::kNotice;
    case State::kDone:
      break;
  }
  return Fail(DropReason::kBadFrame, absl::FailedPreconditionError("the frame is complete"), drops,
              why);
}

Opened FrameReader::TakeFrame() {
  Opened out = std::move(head_opened_);
  out.payload = std::move(body_);
  return out;
}

}  // namespace hivemesh::membership
