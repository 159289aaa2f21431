// libFuzzer target for the gossip packet decoder and the state machine behind it: any bytes
// arriving over UDP or TCP must decode to messages or an error, and handling whatever decodes
// must neither crash nor break the member table's invariants.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "membership/swim.h"
#include "membership/wire.h"

using hivemesh::SteadyTime;
using namespace hivemesh::membership;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<DecodedPacket> decoded = DecodePacket(bytes);
  if (decoded.ok()) {
    // Whatever decodes re-encodes to something that decodes to the same messages.
    for (const Message& m : decoded->messages) {
      absl::StatusOr<DecodedPacket> again = DecodePacket(EncodePacket({EncodeMessage(m)}));
      if (!again.ok() || again->messages.size() != 1 ||
          EncodeMessage(again->messages[0]) != EncodeMessage(m)) {
        __builtin_trap();
      }
    }
  }
  // A node that knows one peer (adopted as trusted: the fuzzer cannot sign for it) receives the
  // packet over UDP and over TCP, then runs its timers.
  static const hivemesh::identity::NodeKey self_key =
      hivemesh::identity::NodeKey::FromSeed(std::string(32, 's'));
  static const hivemesh::identity::NodeKey peer_key =
      hivemesh::identity::NodeKey::FromSeed(std::string(32, 'p'));
  SteadyTime now(std::chrono::hours(1));
  Swim node(SwimConfig::Lan(), "self", "10.0.0.1:7946", "", self_key, 1, now);
  PushPull known;
  known.members.push_back(PushPullMember{"peer", "10.0.0.2:7946", 1, MemberState::kAlive, "", 1, 1,
                                         peer_key.public_key(), ""});
  node.Bootstrap(known, now);
  node.HandlePacket("10.0.0.2:7946", bytes, Channel::kUdp, now);
  node.HandleStream("10.0.0.2:7946", bytes, now);
  for (int i = 0; i < 40; ++i) {
    now += std::chrono::milliseconds(500);
    node.Tick(now);
  }
  int live = 0;
  for (const MemberInfo& m : node.Members()) {
    if (m.state == MemberState::kAlive || m.state == MemberState::kSuspect) ++live;
  }
  if (live != node.NumAlive()) __builtin_trap();  // the live count matches the table
  return 0;
}
