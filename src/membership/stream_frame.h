// Stream framing: how gossip packets travel over TCP (push-pull, joins, TCP pings: one request
// frame and one reply frame per connection), and FrameReader, which reads a frame from untrusted
// bytes without allocating more than it has authenticated (keyed) or received (plaintext). Pure:
// no sockets or clocks; the transport (gossip_node.cc) moves the bytes.
//
// TCP framing version 2. Every frame starts with a 4-byte preamble,
//
//   'H' 'M' [version: u8 = 2] [kind: 'P', 'S' or 'E']
//
// then, by kind:
//  'P' plaintext frame (nodes without keys): [length: u32 BE] [payload: length bytes].
//  'S' sealed frame (nodes with keys):
//        [head length: u16 BE, kMinSealedHead..kMaxSealedHead] [head: an Envelope packet whose
//        payload is the body length, u32 BE] [body: ceil(length / kChunkBytes) chunks, chunk i
//        sealed by Envelope::SealChunk with the head's counter and index i, each holding
//        kChunkBytes of the body (the last one the rest)].
//      The head is authenticated (key, freshness, recipient, replay window) before a byte of the
//      body is read; each chunk is authenticated before the next is read. A chunk's size follows
//      from the authenticated length, so no unauthenticated length is ever trusted beyond the
//      head's own (at most kMaxSealedHead bytes).
//  'E' the "requires encryption" notice: the preamble and a fixed line of text
//      (EncryptionRequiredNotice()). A keyed node answers it, once, in plaintext, to a frame no
//      key authenticates, then closes; a node without keys that gets it in answer to a join
//      learns that the mesh encrypts its gossip. It is never a request.
//
// Framing version 1 (a bare u32 length and the packet) is refused, not misread: its first byte
// is 0 or 1 for any length up to 16 MiB, never 'H'. Every node of a mesh runs one version.
//
// FrameReader reads one frame in steps: NextRead() says where the next bytes go and exactly how
// many (at most kMaxRead), Consume() checks them. What it holds, beyond a fixed ~kMaxSealedHead
// bytes, is reserved from a MemoryBudget first: a plaintext body grows with the bytes that
// actually arrive (doubling, never to the declared length at once), a sealed body is reserved
// whole once its head has authenticated the length. Every refusal is counted (in the Envelope's
// counters for what the Envelope checks, in `drops` for the rest) and named in the error.
//
// Thread safety: none; one connection's reader is used by one thread at a time. The Envelope and
// DropCounters passed to Consume are shared with other readers: the caller serialises them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/memory_budget.h"
#include "membership/envelope.h"

namespace hivemesh::membership {

inline constexpr uint8_t kStreamFramingVersion = 2;
inline constexpr size_t kPreambleBytes = 4;
// Body chunk size of sealed frames, and the most a plaintext body grows by per read.
inline constexpr size_t kChunkBytes = 64 * 1024;
// A sealed head: the Envelope header, the longest recipient, the body length, the seal.
inline constexpr size_t kMinSealedHead = Envelope::kHeaderBytes + 4 + Keyring::kOverhead;
inline constexpr size_t kMaxSealedHead =
    Envelope::kHeaderBytes + Recipient::kMaxAddressBytes + 4 + Keyring::kOverhead;
// The most bytes one NextRead() asks for.
inline constexpr size_t kMaxRead = kChunkBytes + Envelope::kChunkOverhead;

// The notice a keyed node answers to a frame no key authenticates (preamble included).
std::string_view EncryptionRequiredNotice();

// `payload` as one frame to `to`: sealed with the envelope's key, or plaintext without one.
// `counter`, if not null, receives the head's counter (0 in plaintext mode): the requester
// expects Recipient::Reply(envelope.boot_id(), *counter) on the reply.
// REQUIRES: payload.size() <= UINT32_MAX.
std::string EncodeFrame(Envelope& envelope, std::string_view payload, const Recipient& to,
                        int64_t unix_ms, uint64_t* counter = nullptr);

class FrameReader {
 public:
  enum class Result {
    kNeedMore,  // call NextRead() again
    kFrame,     // a whole frame is in: TakeFrame()
    kNotice,    // the peer sent the "requires encryption" notice
  };

  // `max_frame_bytes`: the largest body accepted. `budget`: where body bytes are reserved
  // (empty: not counted).
  FrameReader(size_t max_frame_bytes, MemoryBudget::Reservation budget);

  // Where the next bytes go: exactly size() bytes (1..kMaxRead) must be read into it before
  // Consume(). Fails (kBudget, counted in `drops`) if the budget cannot hold them.
  // REQUIRES: the last Consume() returned kNeedMore (or none was called yet).
  absl::StatusOr<std::span<char>> NextRead(DropCounters& drops, DropReason* why);

  // Checks the bytes NextRead() asked for, with `envelope` (which says whether this node has
  // keys) for sealed frames meant for `expected`. Errors say why and set *why; a keyed node
  // answers kUnauthenticated with the notice.
  absl::StatusOr<Result> Consume(Envelope& envelope, const Recipient& expected, int64_t unix_ms,
                                 DropCounters& drops, DropReason* why);

  // The frame's head is in (and, sealed, authenticated): only the body is left to read. Stays
  // true once set, whatever happens to the body.
  bool head_done() const { return head_done_; }
  // Bytes consumed so far (preamble and head included).
  uint64_t bytes_read() const { return bytes_read_; }
  // The frame's payload and its sender. REQUIRES: Consume() returned kFrame. Once.
  Opened TakeFrame();

 private:
  enum class State {
    kPreamble,
    kPlainLength,
    kPlainBody,
    kSealedHeadLength,
    kSealedHead,
    kChunk,
    kNoticeText,
    kDone
  };

  absl::Status Fail(DropReason reason, absl::Status status, DropCounters& drops, DropReason* why);
  absl::StatusOr<Result> StartBody(size_t length, DropCounters& drops, DropReason* why);
  // The next chunk's sealed size.
  size_t ChunkWant() const;

  const size_t max_frame_bytes_;
  MemoryBudget::Reservation budget_;
  State state_ = State::kPreamble;
  std::string head_;              // preamble, lengths, sealed head, notice text (<= kMaxSealedHead)
  std::string chunk_;             // one sealed chunk (<= kMaxRead), reserved once
  std::string body_;              // the payload so far
  size_t want_ = kPreambleBytes;  // bytes of the current NextRead()
  size_t length_ = 0;             // declared body length
  uint32_t chunk_index_ = 0;
  bool head_done_ = false;
  uint64_t bytes_read_ = 0;
  Opened head_opened_;  // sender and counter of a sealed frame's head
};

}  // namespace hivemesh::membership
