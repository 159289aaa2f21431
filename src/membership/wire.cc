#include "membership/wire.h"

#include "base/status_macros.h"
#include "base/strings.h"
#include "membership/byte_codec.h"

namespace hivemesh::membership {
namespace {

// A key or signature field holds exactly this many bytes, or none.
constexpr size_t kKeyBytes = 32;
constexpr size_t kSigBytes = 64;

absl::Status ReadFixed(ByteReader& r, std::string* out, size_t size, const char* field) {
  absl::Status s = r.Bytes(out, size, field);
  if (s.ok() && !out->empty() && out->size() != size) {
    return absl::InvalidArgumentError(StrCat(field, " of ", out->size(), " bytes, not ", size));
  }
  return s;
}

struct Encoder {
  ByteWriter& w;
  void operator()(const Ping& m) {
    w.Varint(m.seq);
    w.Bytes(m.target);
    w.Bytes(m.source);
    w.Bytes(m.source_addr);
  }
  void operator()(const IndirectPing& m) {
    w.Varint(m.seq);
    w.Bytes(m.target);
    w.Bytes(m.target_addr);
    w.U8(m.want_nack ? 1 : 0);
    w.Bytes(m.source);
    w.Bytes(m.source_addr);
  }
  void operator()(const Ack& m) { w.Varint(m.seq); }
  void operator()(const Nack& m) { w.Varint(m.seq); }
  void operator()(const Watch& m) { w.Bytes(m.source); }
  void operator()(const Suspect& m) {
    w.Varint(m.incarnation);
    w.Bytes(m.node);
    w.Bytes(m.from);
  }
  void operator()(const Alive& m) {
    w.Varint(m.incarnation);
    w.Bytes(m.node);
    w.Bytes(m.addr);
    w.Bytes(m.meta);
    w.U8(m.protocol_min);
    w.U8(m.protocol_max);
    w.Bytes(m.key);
    w.Bytes(m.sig);
  }
  void operator()(const Dead& m) {
    w.Varint(m.incarnation);
    w.Bytes(m.node);
    w.Bytes(m.from);
    w.Bytes(m.sig);
  }
  void Members(const std::vector<PushPullMember>& members) {
    w.Varint(members.size());
    for (const PushPullMember& p : members) {
      w.Bytes(p.node);
      w.Bytes(p.addr);
      w.Varint(p.incarnation);
      w.U8(static_cast<uint8_t>(p.state));
      w.Bytes(p.meta);
      w.U8(p.protocol_min);
      w.U8(p.protocol_max);
      w.Bytes(p.key);
      w.Bytes(p.sig);
    }
  }
  void operator()(const PushPull& m) {
    w.U8(m.join ? 1 : 0);
    Members(m.members);
  }
  void operator()(const Digest& m) {
    w.Varint(m.entries.size());
    for (const DigestEntry& e : m.entries) {
      w.Bytes(e.node);
      w.Varint(e.incarnation);
      w.U8(static_cast<uint8_t>(e.state));
    }
  }
  void operator()(const DigestReply& m) {
    Members(m.members);
    w.Varint(m.want.size());
    for (const std::string& name : m.want) w.Bytes(name);
  }
  void operator()(const Load& m) {
    w.Bytes(m.node);
    w.Varint(m.seq);
    w.Varint(m.age_ms);
    w.Bytes(m.payload);
  }
};

absl::Status ReadState(ByteReader& r, MemberState* out) {
  uint8_t state = 0;
  HM_RETURN_IF_ERROR(r.U8(&state));
  if (state > static_cast<uint8_t>(MemberState::kLeft)) {
    return absl::InvalidArgumentError(StrCat("unknown member state ", state));
  }
  *out = static_cast<MemberState>(state);
  return absl::OkStatus();
}

// A member count, then the members of a push-pull or a digest reply.
absl::Status DecodeMembers(ByteReader& r, std::vector<PushPullMember>* members) {
  uint64_t count = 0;
  HM_RETURN_IF_ERROR(r.Varint(&count));
  // Each member takes at least 9 bytes, so a count the packet cannot hold is refused before
  // anything is reserved.
  if (count > kMaxPushPullMembers || count > r.remaining() / 9) {
    return absl::InvalidArgumentError(StrCat("push-pull claims ", count, " members"));
  }
  members->resize(count);
  for (PushPullMember& p : *members) {
    HM_RETURN_IF_ERROR(r.Bytes(&p.node, kMaxNameBytes, "push-pull node"));
    HM_RETURN_IF_ERROR(r.Bytes(&p.addr, kMaxAddrBytes, "push-pull address"));
    HM_RETURN_IF_ERROR(r.Varint(&p.incarnation));
    HM_RETURN_IF_ERROR(ReadState(r, &p.state));
    HM_RETURN_IF_ERROR(r.Bytes(&p.meta, kMaxMetaBytes, "push-pull metadata"));
    HM_RETURN_IF_ERROR(r.U8(&p.protocol_min));
    HM_RETURN_IF_ERROR(r.U8(&p.protocol_max));
    HM_RETURN_IF_ERROR(ReadFixed(r, &p.key, kKeyBytes, "push-pull key"));
    HM_RETURN_IF_ERROR(ReadFixed(r, &p.sig, kSigBytes, "push-pull signature"));
  }
  return absl::OkStatus();
}

absl::Status DecodeBody(MessageType type, ByteReader& r, Message* out) {
  switch (type) {
    case MessageType::kPing: {
      Ping m;
      HM_RETURN_IF_ERROR(r.U32(&m.seq));
      HM_RETURN_IF_ERROR(r.Bytes(&m.target, kMaxNameBytes, "ping target"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.source, kMaxNameBytes, "ping source"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.source_addr, kMaxAddrBytes, "ping source address"));
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kIndirectPing: {
      IndirectPing m;
      uint8_t nack = 0;
      HM_RETURN_IF_ERROR(r.U32(&m.seq));
      HM_RETURN_IF_ERROR(r.Bytes(&m.target, kMaxNameBytes, "indirect ping target"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.target_addr, kMaxAddrBytes, "indirect ping target address"));
      HM_RETURN_IF_ERROR(r.U8(&nack));
      HM_RETURN_IF_ERROR(r.Bytes(&m.source, kMaxNameBytes, "indirect ping source"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.source_addr, kMaxAddrBytes, "indirect ping source address"));
      m.want_nack = nack != 0;
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kAck: {
      Ack m;
      HM_RETURN_IF_ERROR(r.U32(&m.seq));
      *out = m;
      return absl::OkStatus();
    }
    case MessageType::kNack: {
      Nack m;
      HM_RETURN_IF_ERROR(r.U32(&m.seq));
      *out = m;
      return absl::OkStatus();
    }
    case MessageType::kSuspect: {
      Suspect m;
      HM_RETURN_IF_ERROR(r.Varint(&m.incarnation));
      HM_RETURN_IF_ERROR(r.Bytes(&m.node, kMaxNameBytes, "suspect node"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.from, kMaxNameBytes, "suspect from"));
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kAlive: {
      Alive m;
      HM_RETURN_IF_ERROR(r.Varint(&m.incarnation));
      HM_RETURN_IF_ERROR(r.Bytes(&m.node, kMaxNameBytes, "alive node"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.addr, kMaxAddrBytes, "alive address"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.meta, kMaxMetaBytes, "alive metadata"));
      HM_RETURN_IF_ERROR(r.U8(&m.protocol_min));
      HM_RETURN_IF_ERROR(r.U8(&m.protocol_max));
      HM_RETURN_IF_ERROR(ReadFixed(r, &m.key, kKeyBytes, "alive key"));
      HM_RETURN_IF_ERROR(ReadFixed(r, &m.sig, kSigBytes, "alive signature"));
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kDead: {
      Dead m;
      HM_RETURN_IF_ERROR(r.Varint(&m.incarnation));
      HM_RETURN_IF_ERROR(r.Bytes(&m.node, kMaxNameBytes, "dead node"));
      HM_RETURN_IF_ERROR(r.Bytes(&m.from, kMaxNameBytes, "dead from"));
      HM_RETURN_IF_ERROR(ReadFixed(r, &m.sig, kSigBytes, "leave signature"));
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kPushPull: {
      PushPull m;
      uint8_t join = 0;
      HM_RETURN_IF_ERROR(r.U8(&join));
      m.join = join != 0;
      HM_RETURN_IF_ERROR(DecodeMembers(r, &m.members));
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kDigest: {
      Digest m;
      uint64_t count = 0;
      HM_RETURN_IF_ERROR(r.Varint(&count));
      // Each entry takes at least 3 bytes.
      if (count > kMaxPushPullMembers || count > r.remaining() / 3) {
        return absl::InvalidArgumentError(StrCat("digest claims ", count, " members"));
      }
      m.entries.resize(count);
      for (DigestEntry& e : m.entries) {
        HM_RETURN_IF_ERROR(r.Bytes(&e.node, kMaxNameBytes, "digest node"));
        HM_RETURN_IF_ERROR(r.Varint(&e.incarnation));
        HM_RETURN_IF_ERROR(ReadState(r, &e.state));
      }
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kDigestReply: {
      DigestReply m;
      uint64_t count = 0;
      HM_RETURN_IF_ERROR(DecodeMembers(r, &m.members));
      HM_RETURN_IF_ERROR(r.Varint(&count));
      if (count > kMaxPushPullMembers || count > r.remaining()) {
        return absl::InvalidArgumentError(StrCat("digest reply wants ", count, " members"));
      }
      m.want.resize(count);
      for (std::string& name : m.want) {
        HM_RETURN_IF_ERROR(r.Bytes(&name, kMaxNameBytes, "digest reply want"));
      }
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kLoad: {
      Load m;
      HM_RETURN_IF_ERROR(r.Bytes(&m.node, kMaxNameBytes, "load node"));
      HM_RETURN_IF_ERROR(r.Varint(&m.seq));
      HM_RETURN_IF_ERROR(r.U32(&m.age_ms));
      HM_RETURN_IF_ERROR(r.Bytes(&m.payload, kMaxLoadBytes, "load payload"));
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kWatch: {
      Watch m;
      HM_RETURN_IF_ERROR(r.Bytes(&m.source, kMaxNameBytes, "watch source"));
      *out = std::move(m);
      return absl::OkStatus();
    }
    case MessageType::kCompound:
      break;
  }
  return absl::InvalidArgumentError(StrCat("unknown message type ", static_cast<int>(type)));
}

bool KnownType(uint8_t t) {
  return t >= static_cast<uint8_t>(MessageType::kPing) &&
         t <= static_cast<uint8_t>(MessageType::kDigestReply) &&
         t != static_cast<uint8_t>(MessageType::kCompound);
}

// Decodes [type][body] occupying all of `bytes`.
absl::Status DecodeOne(std::string_view bytes, Message* out) {
  ByteReader r(bytes);
  uint8_t type = 0;
  HM_RETURN_IF_ERROR(r.U8(&type));
  HM_RETURN_IF_ERROR(DecodeBody(static_cast<MessageType>(type), r, out));
  if (!r.done()) return absl::InvalidArgumentError("trailing bytes after a message");
  return absl::OkStatus();
}

}  // namespace

std::string_view MemberStateName(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return "alive";
    case MemberState::kSuspect:
      return "suspect";
    case MemberState::kDead:
      return "dead";
    case MemberState::kLeft:
      return "left";
  }
  return "unknown";
}

MessageType TypeOf(const Message& m) {
  static constexpr MessageType kTypes[] = {
      MessageType::kPing,  MessageType::kIndirectPing, MessageType::kAck,
      MessageType::kNack,  MessageType::kSuspect,      MessageType::kAlive,
      MessageType::kDead,  MessageType::kPushPull,     MessageType::kLoad,
      MessageType::kWatch, MessageType::kDigest,       MessageType::kDigestReply};
  return kTypes[m.index()];
}

std::string AliveClaimBytes(const Alive& m) {
  std::string out = "hivemesh alive claim v2";
  out.push_back('\0');
  ByteWriter w(out);
  Alive unsigned_claim = m;
  unsigned_claim.sig.clear();
  Encoder{w}(unsigned_claim);
  return out;
}

std::string LeaveClaimBytes(const Dead& m) {
  std::string out = "hivemesh leave claim v2";
  out.push_back('\0');
  ByteWriter w(out);
  w.Varint(m.incarnation);
  w.Bytes(m.node);
  return out;
}

Alive AliveOf(const PushPullMember& p) {
  return Alive{p.incarnation, p.node, p.addr, p.meta, p.protocol_min, p.protocol_max, p.key, p.sig};
}

std::string EncodeMessage(const Message& m) {
  std::string out;
  ByteWriter w(out);
  w.U8(static_cast<uint8_t>(TypeOf(m)));
  std::visit(Encoder{w}, m);
  return out;
}

std::string EncodePacket(const std::vector<std::string>& encoded) {
  std::string out;
  ByteWriter w(out);
  w.U8(kWireVersion);
  if (encoded.size() == 1) {
    out += encoded[0];
    return out;
  }
  w.U8(static_cast<uint8_t>(MessageType::kCompound));
  w.Varint(encoded.size());
  for (const std::string& m : encoded) w.Bytes(m);
  return out;
}

absl::StatusOr<DecodedPacket> DecodePacket(std::string_view packet) {
  ByteReader r(packet);
  uint8_t version = 0, type = 0;
  HM_RETURN_IF_ERROR(r.U8(&version));
  if (version != kWireVersion) {
    return absl::InvalidArgumentError(StrCat("unsupported wire version ", version));
  }
  HM_RETURN_IF_ERROR(r.U8(&type));
  DecodedPacket out;
  if (type != static_cast<uint8_t>(MessageType::kCompound)) {
    Message m;
    HM_RETURN_IF_ERROR(DecodeOne(packet.substr(1), &m));
    out.messages.push_back(std::move(m));
    return out;
  }
  uint64_t count = 0;
  HM_RETURN_IF_ERROR(r.Varint(&count));
  if (count == 0 || count > kMaxCompoundMessages) {
    return absl::InvalidArgumentError(StrCat("compound packet with ", count, " messages"));
  }
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t len = 0;
    HM_RETURN_IF_ERROR(r.Varint(&len));
    if (len == 0 || len > r.remaining()) return absl::InvalidArgumentError("truncated message");
    const std::string_view bytes = r.Take(len);
    if (!KnownType(static_cast<uint8_t>(bytes[0]))) {
      ++out.unknown_skipped;  // a newer message type: skip it, keep the rest
      continue;
    }
    Message m;
    HM_RETURN_IF_ERROR(DecodeOne(bytes, &m));
    out.messages.push_back(std::move(m));
  }
  if (!r.done()) return absl::InvalidArgumentError("trailing bytes after a compound packet");
  return out;
}

}  // namespace hivemesh::membership
