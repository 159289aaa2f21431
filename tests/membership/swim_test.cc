// The SWIM + Lifeguard state machine, driven by hand: a manual clock and a tiny in-test network
// that delivers (or drops) each packet the machines produce.
#include "membership/swim.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <optional>

namespace hivemesh::membership {
namespace {

using ::testing::Contains;

SteadyTime T0() { return SteadyTime(std::chrono::hours(1)); }

// The same key for the same name, run after run (and across a node's restarts, as a real node
// keeps its key in its state folder).
identity::NodeKey KeyFor(const std::string& name) {
  std::string seed(32, '\0');
  const size_t h = std::hash<std::string>()(name);
  for (size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<char>((h >> (8 * (i % 8))) + i);
  return identity::NodeKey::FromSeed(seed);
}

// A packet of `messages` that `from` sends to `to` (for the Net's queue).
Output Send(const std::string& to, std::vector<Message> messages) {
  std::vector<std::string> encoded;
  for (const Message& m : messages) encoded.push_back(EncodeMessage(m));
  Output o;
  o.packets.push_back(Outgoing{to + ":1", Channel::kUdp, EncodePacket(encoded)});
  return o;
}

// An alive claim signed with `key`.
Alive Signed(Alive a, const identity::NodeKey& key) {
  a.key = key.public_key();
  a.sig.clear();
  a.sig = key.Sign(AliveClaimBytes(a));
  return a;
}

// Nodes "a", "b", ... at addresses "a:1", "b:1", ...; packets delivered in order, instantly.
class Net {
 public:
  explicit Net(SwimConfig config = SwimConfig::Lan()) : config_(config), now_(T0()) {}

  Swim& Add(const std::string& name, std::string meta = "") {
    nodes_[name] = std::make_unique<Swim>(config_, name, name + ":1", std::move(meta), KeyFor(name),
                                          std::hash<std::string>()(name), now_);
    return *nodes_[name];
  }
  Swim& operator[](const std::string& name) { return *nodes_.at(name); }
  SteadyTime now() const { return now_; }

  // Drop every packet for which `fn(from_name, to_name, channel)` is true.
  std::function<bool(const std::string&, const std::string&, Channel)> drop =
      [](const std::string&, const std::string&, Channel) { return false; };
  // May rewrite a packet before it is delivered (after `drop`); an empty packet is dropped.
  std::function<void(const std::string&, const std::string&, Outgoing&)> edit =
      [](const std::string&, const std::string&, Outgoing&) {};
  // Sees every packet sent (by its sender's name), delivered or dropped.
  std::function<void(const std::string&, const Outgoing&)> tap = [](const std::string&,
                                                                    const Outgoing&) {};

  void Deliver(const std::string& from, Output out) {
    for (const MemberEvent& e : out.events) events.push_back({from, e});
    for (Outgoing& p : out.packets) queue_.push_back({from, std::move(p)});
    while (!queue_.empty()) {
      auto [sender, p] = std::move(queue_.front());
      queue_.pop_front();
      const std::string to = p.to.substr(0, p.to.find(':'));
      ++packets_sent;
      tap(sender, p);
      if (p.channel == Channel::kUdp) largest_udp = std::max(largest_udp, p.packet.size());
      if (!nodes_.count(to) || drop(sender, to, p.channel)) continue;
      edit(sender, to, p);
      if (p.packet.empty()) continue;
      Swim& dst = *nodes_[to];
      if (p.channel == Channel::kUdp) {
        Output o = dst.HandlePacket(sender + ":1", p.packet, Channel::kUdp, now_);
        Record(to, o);
      } else {
        Output o = dst.HandleStream(sender + ":1", p.packet, now_);
        std::optional<std::string> reply = std::move(o.reply);
        Record(to, o);
        if (reply && !drop(to, sender, Channel::kTcp)) {
          Output back = nodes_[sender]->HandlePacket(to + ":1", *reply, Channel::kTcp, now_);
          Record(sender, back);
        }
      }
    }
  }

  // Advances time in `step`s up to `d`, ticking every node whose timer is due.
  void Run(std::chrono::milliseconds d,
           std::chrono::milliseconds step = std::chrono::milliseconds(10)) {
    const SteadyTime end = now_ + d;
    while (now_ < end) {
      now_ += step;
      for (auto& [name, n] : nodes_) {
        if (n->NextTimer() <= now_) Deliver(name, n->Tick(now_));
      }
    }
  }

  void JoinAll(const std::string& seed) {
    for (auto& [name, n] : nodes_) {
      if (name != seed) Deliver(name, n->Join({seed + ":1"}, now_));
    }
  }

  MemberState StateAt(const std::string& observer, const std::string& node) {
    return nodes_.at(observer)->StateOf(node).value_or(MemberState::kDead);
  }
  bool Knows(const std::string& observer, const std::string& node) {
    return nodes_.at(observer)->Find(node).has_value();
  }

  struct Seen {
    std::string observer;
    MemberEvent event;
  };
  std::vector<Seen> events;
  int packets_sent = 0;
  size_t largest_udp = 0;

 private:
  void Record(const std::string& node, Output& o) {
    for (const MemberEvent& e : o.events) events.push_back({node, e});
    for (Outgoing& p : o.packets) queue_.push_back({node, std::move(p)});
  }

  SwimConfig config_;
  SteadyTime now_;
  std::map<std::string, std::unique_ptr<Swim>> nodes_;
  std::deque<std::pair<std::string, Outgoing>> queue_;
};

bool SawEvent(const Net& net, const std::string& observer, EventType type,
              const std::string& node) {
  for (const auto& s : net.events) {
    if (s.observer == observer && s.event.type == type && s.event.node == node) return true;
  }
  return false;
}

TEST(SwimConfigTest, FormulasMatchMemberlist) {
  const SwimConfig lan = SwimConfig::Lan();
  EXPECT_EQ(SuspicionMinTimeout(lan, 10), Millis(4000));
  EXPECT_EQ(SuspicionMinTimeout(lan, 1), Millis(4000));
  EXPECT_EQ(SuspicionMinTimeout(lan, 100), Millis(8000));
  EXPECT_EQ(SuspicionMinTimeout(lan, 100) * lan.suspicion_max_timeout_mult, Millis(48000));
  EXPECT_EQ(RetransmitLimit(lan, 5), 4);
  EXPECT_EQ(RetransmitLimit(lan, 10), 8);
  EXPECT_EQ(RetransmitLimit(lan, 1000), 16);
  EXPECT_EQ(PushPullInterval(lan, 32), Millis(30000));
  EXPECT_EQ(PushPullInterval(lan, 64), Millis(60000));
  EXPECT_EQ(PushPullInterval(lan, 1000), Millis(30000 * 6));
  EXPECT_EQ(SuspicionConfirmations(lan, 10), 2);
  EXPECT_EQ(SuspicionConfirmations(lan, 3), 0);
  // Lifeguard: max with no confirmation, min once k have confirmed, in between otherwise.
  EXPECT_EQ(SuspicionTimeout(Millis(4000), Millis(24000), 0, 2), Millis(24000));
  EXPECT_EQ(SuspicionTimeout(Millis(4000), Millis(24000), 2, 2), Millis(4000));
  EXPECT_EQ(SuspicionTimeout(Millis(4000), Millis(24000), 1, 2), Millis(11381));
  EXPECT_EQ(SuspicionTimeout(Millis(4000), Millis(24000), 5, 0), Millis(4000));
  EXPECT_EQ(SwimConfig::Wan().probe_interval, Millis(5000));
  EXPECT_EQ(SwimConfig::Local().probe_timeout, Millis(200));
  EXPECT_TRUE(lan.Validate().ok());
  SwimConfig bad = lan;
  bad.probe_timeout = Millis(2000);
  EXPECT_FALSE(bad.Validate().ok());
  EXPECT_FALSE(SwimConfig::Profile("moon").ok());
}

TEST(SwimTest, JoinThroughASeedAndConverge) {
  Net net;
  for (const char* n : {"a", "b", "c", "d", "e"}) net.Add(n);
  net.JoinAll("a");
  EXPECT_TRUE(net["b"].joined());
  net.Run(Millis(3000));
  for (const char* o : {"a", "b", "c", "d", "e"}) {
    EXPECT_EQ(net[o].NumAlive(), 5) << o;
    for (const char* n : {"a", "b", "c", "d", "e"}) {
      if (std::string(o) == n) continue;
      EXPECT_EQ(net.StateAt(o, n), MemberState::kAlive) << o << " sees " << n;
    }
  }
  EXPECT_TRUE(SawEvent(net, "e", EventType::kJoined, "b"));
  // Healthy probing never raises awareness.
  for (const char* o : {"a", "b", "c", "d", "e"}) EXPECT_EQ(net[o].awareness(), 0);
}

TEST(SwimTest, UnreachableNodeIsProbedIndirectlySuspectedThenDeclaredDead) {
  Net net;
  for (const char* n : {"a", "b", "c", "d"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(2000));
  // "d" crashes: nothing reaches it or leaves it.
  net.drop = [](const std::string& from, const std::string& to, Channel) {
    return from == "d" || to == "d";
  };
  net.Run(Millis(3000));
  EXPECT_EQ(net.StateAt("a", "d"), MemberState::kSuspect);
  EXPECT_GT(net["a"].stats().indirect_probes + net["b"].stats().indirect_probes +
                net["c"].stats().indirect_probes,
            0u);
  // Suspicion at n=4: min 4 s, max 24 s; k = 0 at n = 4 (n - 2 < 2), so the minimum applies.
  net.Run(Millis(6000));
  for (const char* o : {"a", "b", "c"}) {
    EXPECT_EQ(net.StateAt(o, "d"), MemberState::kDead) << o;
    EXPECT_TRUE(SawEvent(net, o, EventType::kFailed, "d")) << o;
  }
  EXPECT_EQ(net["a"].NumAlive(), 3);
}

// Watches (SwimConfig::watchers): each node watches its K successors on a ring of name hashes,
// so every member has exactly K watchers, and only alive members are watched.
TEST(SwimWatchTest, EveryMemberIsWatchedByKOthers) {
  Net net;
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f", "g"};
  for (const std::string& n : names) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(3000));
  std::map<std::string, int> watchers;
  for (const std::string& o : names) {
    const std::vector<WatchTarget> targets = net[o].WatchTargets();
    EXPECT_EQ(targets.size(), 3u) << o;
    for (const WatchTarget& t : targets) {
      EXPECT_NE(t.name, o);
      EXPECT_EQ(t.addr, t.name + ":1");
      ++watchers[t.name];
    }
  }
  for (const std::string& n : names) EXPECT_EQ(watchers[n], 3) << n;
  // A member that left is no one's target any more.
  net.Deliver("g", net["g"].Leave(net.now()));
  net.Run(Millis(2000));
  for (const std::string& o : names) {
    if (o == "g") continue;
    for (const WatchTarget& t : net[o].WatchTargets()) EXPECT_NE(t.name, "g") << o;
  }
  EXPECT_TRUE(net["g"].WatchTargets().empty()) << "a leaving node watches no one";
}

// A crashed member's watch connection closes: the watcher probes it at once and, the probe
// failing, suspects it for watch_suspicion_timeout only. Everyone knows it dead in about two
// probe intervals, where the usual path (probe turn, suspicion of 4 s or more) takes 5-9 s.
TEST(SwimWatchTest, AClosedWatchOfACrashedMemberFindsItDeadInTwoIntervals) {
  Net net;
  for (const char* n : {"a", "b", "c", "d", "e"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(2000));
  net.drop = [](const std::string& from, const std::string& to, Channel) {
    return from == "d" || to == "d";
  };
  net.Deliver("a", net["a"].WatchClosed("d", net.now()));
  EXPECT_EQ(net["a"].stats().watch_closed, 1u);
  net.Run(Millis(1200));
  EXPECT_EQ(net.StateAt("a", "d"), MemberState::kSuspect);
  net.Run(Millis(1300));  // 2.5 s after the close
  for (const char* o : {"a", "b", "c", "e"}) {
    EXPECT_EQ(net.StateAt(o, "d"), MemberState::kDead) << o;
  }
}

// A watch may close for reasons other than a crash (the member restarted its listener, a
// middlebox reset it): a member that answers the probe is not suspected at all, and a flurry of
// closes costs at most one probe per two intervals.
TEST(SwimWatchTest, AClosedWatchOfALiveMemberChangesNothing) {
  Net net;
  for (const char* n : {"a", "b", "c", "d"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(2000));
  const uint64_t probes = net["a"].stats().probes;
  net.Deliver("a", net["a"].WatchClosed("b", net.now()));
  net.Deliver("a", net["a"].WatchClosed("b", net.now()));
  EXPECT_EQ(net["a"].stats().probes, probes + 1);
  EXPECT_EQ(net["a"].stats().watch_closed, 1u);
  net.Run(Millis(10000));
  for (const char* o : {"a", "c", "d"}) EXPECT_EQ(net.StateAt(o, "b"), MemberState::kAlive) << o;
  EXPECT_EQ(net["a"].stats().suspicions, 0u);
  // Unknown and departed members are no one's business.
  EXPECT_TRUE(net["a"].WatchClosed("nobody", net.now()).packets.empty());
}

// The first frame of a watch connection: a member gets an Ack and the stream stays a watch; a
// stranger gets nothing (it would only hold a connection open).
TEST(SwimWatchTest, OnlyMembersMayWatch) {
  Net net;
  for (const char* n : {"a", "b"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(500));
  const std::string watch = EncodePacket({EncodeMessage(Watch{"b"})});
  Output o = net["a"].HandleStream("b:1", watch, net.now());
  ASSERT_TRUE(o.reply.has_value());
  EXPECT_EQ(o.watched_by, std::optional<std::string>("b"));
  Output stranger =
      net["a"].HandleStream("x:1", EncodePacket({EncodeMessage(Watch{"x"})}), net.now());
  EXPECT_FALSE(stranger.reply.has_value());
  EXPECT_FALSE(stranger.watched_by.has_value());
  // Members announce protocol 2 or later: they are watched.
  EXPECT_GE(net["a"].Find("b")->protocol_max, 2);
}

// Anti-entropy by digest (protocol 3).

// The messages of one packet (the test fails if it does not decode).
std::vector<Message> MessagesOf(const std::string& packet) {
  auto d = DecodePacket(packet);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? d->messages : std::vector<Message>{};
}

TEST(SwimDigestTest, AMeshAtRestExchangesDigestsAndEmptyReplies) {
  Net net;
  for (const char* n : {"a", "b", "c", "d", "e", "f"}) net.Add(n, std::string(40, 'm'));
  net.JoinAll("a");
  net.Run(Millis(3000));
  int digests = 0, push_pulls = 0;
  size_t largest = 0;
  net.tap = [&](const std::string&, const Outgoing& p) {
    if (p.channel != Channel::kTcp) return;
    for (const Message& m : MessagesOf(p.packet)) {
      if (std::holds_alternative<Digest>(m)) ++digests;
      if (std::holds_alternative<PushPull>(m) || std::holds_alternative<DigestReply>(m)) {
        ++push_pulls;
      }
    }
    largest = std::max(largest, p.packet.size());
  };
  // Every node starts an exchange within one push-pull interval; the replies carry nothing.
  int empty_replies = 0;
  net.Run(Millis(61000));
  EXPECT_GE(digests, 6);
  EXPECT_EQ(push_pulls, 0) << "no full state and no follow-up at rest";
  // Six members of 1 + 40-byte metadata, a 32-byte key and a 64-byte signature each: a full
  // push-pull is over 900 bytes; a digest a tenth of that.
  EXPECT_LT(largest, 100u);
  for (const char* n : {"a", "b"}) {
    Output o = net[n].HandleStream(
        "c:1",
        EncodePacket({EncodeMessage(Digest{{{"a", net["a"].incarnation(), MemberState::kAlive},
                                            {"b", net["b"].incarnation(), MemberState::kAlive},
                                            {"c", net["c"].incarnation(), MemberState::kAlive},
                                            {"d", net["d"].incarnation(), MemberState::kAlive},
                                            {"e", net["e"].incarnation(), MemberState::kAlive},
                                            {"f", net["f"].incarnation(), MemberState::kAlive}}})}),
        net.now());
    ASSERT_TRUE(o.reply.has_value());
    std::vector<Message> reply = MessagesOf(*o.reply);
    ASSERT_EQ(reply.size(), 1u);
    const auto* r = std::get_if<DigestReply>(&reply[0]);
    ASSERT_NE(r, nullptr);
    if (r->members.empty() && r->want.empty()) ++empty_replies;
  }
  EXPECT_EQ(empty_replies, 2);
}

TEST(SwimDigestTest, ADigestIsAnsweredWithWhatItLacksAndWhatItKnowsBetter) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(2000));
  const uint64_t c = net["c"].incarnation();
  // The digest lacks b, holds c older than a does, and knows z and a newer a.
  Output o = net["a"].HandleStream(
      "x:1",
      EncodePacket({EncodeMessage(Digest{{{"a", net["a"].incarnation() + 1, MemberState::kAlive},
                                          {"c", c, MemberState::kAlive},
                                          {"z", 3, MemberState::kAlive}}})}),
      net.now());
  ASSERT_TRUE(o.reply.has_value());
  std::vector<Message> reply = MessagesOf(*o.reply);
  const auto* r = std::get_if<DigestReply>(&reply.at(0));
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->members.size(), 1u);
  EXPECT_EQ(r->members[0].node, "b");
  EXPECT_EQ(r->members[0].key.size(), 32u) << "a full, signed entry";
  EXPECT_EQ(r->want, (std::vector<std::string>{"a", "z"}));
  // The same incarnation with a stronger state is newer too (a suspicion of c).
  Output s = net["a"].HandleStream(
      "x:1", EncodePacket({EncodeMessage(Digest{{{"c", c, MemberState::kSuspect}}})}), net.now());
  ASSERT_TRUE(s.reply.has_value());
  const std::vector<Message> suspicion = MessagesOf(*s.reply);
  const auto* rs = std::get_if<DigestReply>(&suspicion.at(0));
  ASSERT_NE(rs, nullptr);
  EXPECT_THAT(rs->want, Contains("c"));
}

// Each of a and b changes its metadata, and gossip never tells the other (the claims are cut
// out of every UDP packet): the first digest exchange between them repairs both, by the entry
// in the reply one way and the wanted entry sent after it the other way.
// Every alive message with metadata `meta` is taken out of the UDP packets that carry it: gossip
// never spreads that change.
void DropGossipedMeta(Net& net, std::string meta) {
  net.edit = [meta](const std::string&, const std::string&, Outgoing& p) {
    if (p.channel != Channel::kUdp) return;
    std::vector<std::string> kept;
    for (const Message& m : MessagesOf(p.packet)) {
      const auto* alive = std::get_if<Alive>(&m);
      if (alive == nullptr || alive->meta != meta) kept.push_back(EncodeMessage(m));
    }
    p.packet = kept.empty() ? "" : EncodePacket(kept);
  };
}

TEST(SwimDigestTest, OneExchangeRepairsWhatGossipMissedBothWays) {
  Net net;
  net.Add("a", "v1");
  net.Add("b", "v1");
  net.JoinAll("a");
  net.Run(Millis(2000));
  ASSERT_EQ(net["a"].Find("b")->meta, "v1");
  DropGossipedMeta(net, "v2");
  int digests = 0, follow_ups = 0;
  net.tap = [&](const std::string&, const Outgoing& p) {
    if (p.channel != Channel::kTcp) return;
    for (const Message& m : MessagesOf(p.packet)) {
      digests += std::holds_alternative<Digest>(m);
      if (const auto* f = std::get_if<DigestReply>(&m)) {
        ++follow_ups;
        ASSERT_EQ(f->members.size(), 1u);
        EXPECT_EQ(f->members[0].meta, "v2");
      }
    }
  };
  net.Deliver("a", net["a"].UpdateMeta("v2", net.now()));
  net.Deliver("b", net["b"].UpdateMeta("v2", net.now()));
  net.Run(Millis(5000));
  EXPECT_EQ(net["a"].Find("b")->meta, "v1") << "gossip carried the change";
  while (digests == 0 && net.now() < T0() + Millis(120000)) net.Run(Millis(100));
  ASSERT_EQ(digests, 1);
  EXPECT_EQ(follow_ups, 1);
  EXPECT_EQ(net["a"].Find("b")->meta, "v2");
  EXPECT_EQ(net["b"].Find("a")->meta, "v2");
  EXPECT_EQ(net.StateAt("a", "b"), MemberState::kAlive);
  EXPECT_EQ(net.StateAt("b", "a"), MemberState::kAlive);
}

TEST(SwimDigestTest, OnlyTheAnswerToOurOwnDigestMayAskForEntries) {
  Net net;
  for (const char* n : {"a", "b"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(2000));
  const std::string wants_all = EncodePacket({EncodeMessage(DigestReply{{}, {"a", "b", "a"}})});
  Output unasked = net["a"].HandlePacket("b:1", wants_all, Channel::kTcp, net.now());
  EXPECT_TRUE(unasked.packets.empty()) << "a reply to no digest of ours";
  Output udp = net["a"].HandlePacket("b:1", wants_all, Channel::kUdp, net.now());
  EXPECT_TRUE(udp.packets.empty());
  // A digest of many names the node does not know costs it an answer about as large.
  Digest many;
  for (int i = 0; i < 2000; ++i) many.entries.push_back({"n" + std::to_string(i), 1});
  const std::string packet = EncodePacket({EncodeMessage(many)});
  Output o = net["a"].HandleStream("x:1", packet, net.now());
  ASSERT_TRUE(o.reply.has_value());
  EXPECT_LE(o.reply->size(), packet.size() + 300);
  EXPECT_TRUE(o.packets.empty());
}

TEST(SwimDigestTest, MembersOnProtocolTwoGetAFullPushPull) {
  SwimConfig config = SwimConfig::Lan();
  config.protocol_max = 2;
  Net net(config);
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(2000));
  int digests = 0, push_pulls = 0;
  net.tap = [&](const std::string&, const Outgoing& p) {
    if (p.channel != Channel::kTcp) return;
    for (const Message& m : MessagesOf(p.packet)) {
      digests += std::holds_alternative<Digest>(m);
      push_pulls += std::holds_alternative<PushPull>(m);
    }
  };
  net.Run(Millis(61000));
  EXPECT_EQ(digests, 0);
  EXPECT_GE(push_pulls, 3);
}

TEST(SwimTest, SuspectedNodeRefutesWithAHigherIncarnation) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  // "a" alone believes "c" is suspect and tells "c" directly.
  const uint64_t before = net["c"].incarnation();
  Output fake;
  fake.packets.push_back(
      Outgoing{"c:1", Channel::kUdp, EncodePacket({EncodeMessage(Suspect{before, "c", "a"})})});
  net.Deliver("a", std::move(fake));
  EXPECT_EQ(net["c"].incarnation(), before + 1);
  EXPECT_EQ(net["c"].stats().refutations, 1u);
  EXPECT_EQ(net["c"].awareness(), 1) << "Lifeguard: a refutation raises local health concern";
  net.Run(Millis(1500));
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kAlive);
  EXPECT_EQ(net["a"].Find("c")->incarnation, before + 1);
  // An old suspicion (lower incarnation) is ignored.
  Output stale;
  stale.packets.push_back(
      Outgoing{"b:1", Channel::kUdp, EncodePacket({EncodeMessage(Suspect{before, "c", "a"})})});
  net.Deliver("a", std::move(stale));
  EXPECT_EQ(net.StateAt("b", "c"), MemberState::kAlive);
}

TEST(SwimTest, IndependentConfirmationsShortenTheSuspicionTimeout) {
  // 10 nodes: k = 2, min 4 s, max 24 s.
  Net net;
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  for (const auto& n : names) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(3000));
  net.drop = [](const std::string&, const std::string&, Channel) { return true; };  // silence
  auto suspect_from = [&](const std::string& from) {
    net.drop = [](const std::string&, const std::string& to, Channel) { return to != "b"; };
    Output o;
    o.packets.push_back(
        Outgoing{"b:1", Channel::kUdp,
                 EncodePacket({EncodeMessage(Suspect{net["j"].incarnation(), "j", from})})});
    net.Deliver(from, std::move(o));
    net.drop = [](const std::string&, const std::string&, Channel) { return true; };
  };
  suspect_from("c");
  ASSERT_EQ(net.StateAt("b", "j"), MemberState::kSuspect);
  net.Run(Millis(10000));
  EXPECT_EQ(net.StateAt("b", "j"), MemberState::kSuspect) << "no confirmation: waits toward 24 s";
  suspect_from("d");
  suspect_from("d");  // the same confirmer twice counts once
  suspect_from("e");  // second confirmation: timeout = min = 4 s, already passed
  net.Run(Millis(100));
  EXPECT_EQ(net.StateAt("b", "j"), MemberState::kDead);
}

TEST(SwimTest, ASuspicionIsReGossipedWithItsFirstKConfirmationsOnly) {
  // 10 nodes: k = 2. Probing is slowed down so that "b" confirms nothing itself while the test
  // runs (its suspicion timeout grows with it: 240 s at the least).
  SwimConfig config = SwimConfig::Lan();
  config.probe_interval = Millis(60000);
  config.probe_timeout = Millis(30000);
  Net net(config);
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  for (const auto& n : names) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(3000));
  ASSERT_EQ(net["b"].NumAlive(), 10);
  // The `from` of every suspect message about "j" in the packets "b" sends.
  std::vector<std::string> gossiped;
  net.tap = [&](const std::string& sender, const Outgoing& p) {
    if (sender != "b") return;
    absl::StatusOr<DecodedPacket> decoded = DecodePacket(p.packet);
    ASSERT_TRUE(decoded.ok());
    for (const Message& m : decoded->messages) {
      const auto* s = std::get_if<Suspect>(&m);
      if (s != nullptr && s->node == "j") gossiped.push_back(s->from);
    }
  };
  auto heard = [&](const std::string& from) {
    return std::count(gossiped.begin(), gossiped.end(), from);
  };
  net.drop = [](const std::string&, const std::string&, Channel) { return true; };  // silence
  auto suspect_from = [&](const std::string& from) {
    net.drop = [](const std::string&, const std::string& to, Channel) { return to != "b"; };
    net.Deliver(from, Send("b", {Suspect{net["j"].incarnation(), "j", from}}));
    net.drop = [](const std::string&, const std::string&, Channel) { return true; };
  };
  suspect_from("c");  // the accusation
  ASSERT_EQ(net.StateAt("b", "j"), MemberState::kSuspect);
  net.Run(Millis(300));
  EXPECT_GT(heard("c"), 0);
  suspect_from("d");  // confirmation 1 of 2: re-gossiped
  net.Run(Millis(300));
  EXPECT_GT(heard("d"), 0);
  suspect_from("e");  // confirmation 2 of 2: re-gossiped
  net.Run(Millis(300));
  EXPECT_GT(heard("e"), 0);
  const size_t sent_before = gossiped.size();
  // The k+1-th and later confirmations are no news: nothing about them enters the queue, so
  // b goes on sending the k-th (until its retransmit limit) and never theirs.
  suspect_from("f");
  suspect_from("g");
  net.Run(Millis(2000));
  EXPECT_EQ(heard("f"), 0);
  EXPECT_EQ(heard("g"), 0);
  EXPECT_GT(gossiped.size(), sent_before) << "b kept gossiping the suspicion it had";
  EXPECT_EQ(net.StateAt("b", "j"), MemberState::kSuspect);
}

TEST(SwimTest, GracefulLeaveIsSeenAsLeft) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  net.Deliver("c", net["c"].Leave(net.now()));
  EXPECT_FALSE(net["c"].LeaveDone());
  net.Run(Millis(2000));
  EXPECT_TRUE(net["c"].LeaveDone());
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kLeft);
  EXPECT_EQ(net.StateAt("b", "c"), MemberState::kLeft);
  EXPECT_TRUE(SawEvent(net, "a", EventType::kLeft, "c"));
  EXPECT_FALSE(SawEvent(net, "a", EventType::kFailed, "c"));
  EXPECT_EQ(net["a"].NumAlive(), 2);
}

TEST(SwimTest, MetadataChangeSpreads) {
  Net net;
  for (const char* n : {"a", "b", "c", "d"}) net.Add(n, "v1");
  net.JoinAll("a");
  net.Run(Millis(1500));
  net.Deliver("d", net["d"].UpdateMeta("v2", net.now()));
  net.Run(Millis(1000));
  for (const char* o : {"a", "b", "c"}) {
    EXPECT_EQ(net[o].Find("d")->meta, "v2") << o;
    EXPECT_TRUE(SawEvent(net, o, EventType::kUpdated, "d")) << o;
  }
}

TEST(SwimTest, AMetadataChangePushedToAllReachesEveryMemberWithoutGossip) {
  Net net;
  for (const char* n : {"a", "b", "c", "d", "e"}) net.Add(n, "v1");
  net.JoinAll("a");
  net.Run(Millis(2000));
  // Every UDP packet carrying the new metadata is lost: the broadcast reaches no one.
  DropGossipedMeta(net, "v2");
  int pushed = 0;
  net.tap = [&](const std::string& from, const Outgoing& p) {
    if (from != "d" || p.channel != Channel::kTcp) return;
    ++pushed;
    // d's own entry alone, as a digest reply: each member answers with an empty one.
    for (const Message& m : MessagesOf(p.packet)) {
      const auto* push = std::get_if<DigestReply>(&m);
      ASSERT_NE(push, nullptr);
      ASSERT_EQ(push->members.size(), 1u);
      EXPECT_EQ(push->members[0].node, "d");
      EXPECT_TRUE(push->want.empty());
    }
  };
  net.Deliver("d", net["d"].UpdateMeta("v2", net.now()));
  net.Deliver("d", net["d"].PushSelfToAll(net.now()));
  EXPECT_EQ(pushed, 4) << "one exchange with each live member";
  for (const char* o : {"a", "b", "c", "e"}) {
    EXPECT_EQ(net[o].Find("d")->meta, "v2") << o;
    EXPECT_TRUE(SawEvent(net, o, EventType::kUpdated, "d")) << o;
  }
  // A member held dead is not pushed to.
  net.drop = [](const std::string& from, const std::string& to, Channel) {
    return from == "e" || to == "e";
  };
  while (net.StateAt("d", "e") == MemberState::kAlive && net.now() < T0() + Millis(120000)) {
    net.Run(Millis(100));
  }
  ASSERT_NE(net.StateAt("d", "e"), MemberState::kAlive);
  pushed = 0;
  net.Deliver("d", net["d"].PushSelfToAll(net.now()));
  EXPECT_EQ(pushed, 3);
}

TEST(SwimTest, LoadReportsSpreadWithSequenceAndAge) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  net["b"].SetLoad("queue=3", net.now());
  net.Run(Millis(3000));
  const std::optional<MemberInfo> seen = net["c"].Find("b");
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->load, "queue=3");
  EXPECT_EQ(seen->load_seq, 1u);
  EXPECT_LE(seen->load_age_ms, 3000u);
  net["b"].SetLoad("queue=9", net.now());
  net.Run(Millis(3000));
  EXPECT_EQ(net["c"].Find("b")->load, "queue=9");
  EXPECT_EQ(net["a"].Find("b")->load_seq, 2u);
  // An older report arriving late is ignored.
  Output late;
  late.packets.push_back(
      Outgoing{"a:1", Channel::kUdp, EncodePacket({EncodeMessage(Load{"b", 1, 0, "queue=3"})})});
  net.Deliver("c", std::move(late));
  EXPECT_EQ(net["a"].Find("b")->load, "queue=9");
}

TEST(SwimTest, AForgedLoadSequenceSilencesANodeOnlyUntilItGoesStale) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  net["b"].SetLoad("queue=1", net.now());
  net.Run(Millis(1000));
  ASSERT_EQ(net["a"].Find("b")->load, "queue=1");
  // The largest sequence number there is, with a made-up load.
  net.Deliver("c", Send("a", {Load{"b", UINT64_MAX, 0, "queue=999"}}));
  EXPECT_EQ(net["a"].Find("b")->load, "queue=999");
  net["b"].SetLoad("queue=2", net.now());
  net.Run(Millis(2000));
  EXPECT_EQ(net["a"].Find("b")->load, "queue=999") << "ordered after the forged one, for now";
  // Three refresh periods later the forged report no longer orders anything: b's next report
  // (b's agent sets it every probe interval; an unchanged one is re-announced every 10) is
  // taken.
  for (int i = 0; i < 45; ++i) {
    net["b"].SetLoad("queue=2", net.now());
    net.Run(Millis(1000));
  }
  EXPECT_EQ(net["a"].Find("b")->load, "queue=2");
}

TEST(SwimTest, ARestartedNodesLoadReportsAreHeardAtOnce) {
  Net net;
  for (const char* n : {"a", "b"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  for (int i = 0; i < 20; ++i) {
    net["b"].SetLoad("queue=" + std::to_string(i), net.now());
    net.Run(Millis(1000));
  }
  ASSERT_EQ(net["a"].Find("b")->load_seq, 20u);
  // b restarts (same key; its new life numbers its reports from a higher base, as the
  // transport's wall clock makes it) and rejoins.
  net.Add("b");
  net["b"].SetLoadSequenceBase(1000);
  net.Deliver("b", net["b"].Join({"a:1"}, net.now()));
  net.Run(Millis(1000));
  net["b"].SetLoad("queue=new", net.now());
  net.Run(Millis(1000));
  EXPECT_EQ(net["a"].Find("b")->load, "queue=new");
}

TEST(SwimTest, RestartedNodeReclaimsItsNameAndIsAliveAgain) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  net.drop = [](const std::string& from, const std::string& to, Channel) {
    return from == "c" || to == "c";
  };
  net.Run(Millis(12000));
  ASSERT_EQ(net.StateAt("a", "c"), MemberState::kDead);
  // "c" restarts with incarnation 0 at the same address and joins again.
  net.drop = [](const std::string&, const std::string&, Channel) { return false; };
  net.Add("c");
  net.Deliver("c", net["c"].Join({"a:1"}, net.now()));
  net.Run(Millis(2000));
  EXPECT_GT(net["c"].incarnation(), 0u) << "it refuted its own death";
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kAlive);
  EXPECT_EQ(net.StateAt("b", "c"), MemberState::kAlive);
  EXPECT_TRUE(SawEvent(net, "b", EventType::kAlive, "c"));
}

TEST(SwimTest, OnlyTheBoundKeyMayClaimAName) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n, "real");
  net.JoinAll("a");
  net.Run(Millis(1500));
  const uint64_t inc = net["a"].Find("b")->incarnation;
  const std::string key = net["a"].Find("b")->key;
  EXPECT_EQ(key, KeyFor("b").public_key());
  const identity::NodeKey mallory = KeyFor("mallory");
  // Unsigned, signed by another key, and b's own signature over other fields: all refused.
  Alive forged{inc + 1000, "b", "evil:1", "evil", 1, 1};
  Alive tampered = Signed(Alive{inc + 1, "b", "b:1", "real", 1, 1}, KeyFor("b"));
  tampered.meta = "evil";
  net.Deliver("c", Send("a", {forged, Signed(forged, mallory), tampered}));
  const MemberInfo b = *net["a"].Find("b");
  EXPECT_EQ(b.addr, "b:1");
  EXPECT_EQ(b.meta, "real");
  EXPECT_EQ(b.incarnation, inc);
  EXPECT_EQ(b.key, key);
  EXPECT_EQ(net["a"].stats().claims_bad_signature, 2u);
  EXPECT_EQ(net["a"].stats().claims_name_taken, 1u);
  // A claim to a's own name by another key changes nothing either.
  net.Deliver("c", Send("a", {Signed(Alive{inc + 5, "a", "evil:1", "", 1, 1}, mallory)}));
  EXPECT_EQ(net["a"].stats().refutations, 0u);
  EXPECT_EQ(net["a"].stats().claims_name_taken, 2u);
}

TEST(SwimTest, ARevokedKeysMemberIsDeadAndItsClaimsAreRefused) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n, "real");
  net.JoinAll("a");
  net.Run(Millis(1500));
  ASSERT_EQ(net.StateAt("a", "c"), MemberState::kAlive);
  const std::string key = KeyFor("c").public_key();
  Output revoked = net["a"].RevokeKey(key, net.now());
  ASSERT_EQ(revoked.events.size(), 1u);
  EXPECT_EQ(revoked.events[0].type, EventType::kFailed);
  EXPECT_EQ(revoked.events[0].node, "c");
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kDead);
  EXPECT_TRUE(net["a"].RevokeKey(key, net.now()).events.empty()) << "taken once";
  // The death is not gossiped: the others (which did not revoke it) keep it alive, and a keeps
  // it dead while the mesh goes on.
  net.Run(Millis(5000));
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kDead);
  EXPECT_EQ(net.StateAt("b", "c"), MemberState::kAlive);
  // c's refutation, relayed by b: refused and counted, c stays dead at its incarnation.
  const uint64_t inc = net["a"].Find("c")->incarnation;
  net.Deliver("b", Send("a", {Signed(Alive{inc + 10, "c", "c:1", "real", 1, 1}, KeyFor("c"))}));
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kDead);
  EXPECT_EQ(net["a"].Find("c")->incarnation, inc);
  EXPECT_EQ(net["a"].stats().claims_revoked, 1u);
  // Once every node revoked it, it is dead everywhere.
  EXPECT_EQ(net["b"].RevokeKey(key, net.now()).events.size(), 1u);
  net.Run(Millis(5000));
  EXPECT_EQ(net.StateAt("b", "c"), MemberState::kDead);
}

TEST(SwimTest, ANodeMovesItsOwnNameAndOtherKeysTakeItOnlyWhenFree) {
  const identity::NodeKey mallory = KeyFor("mallory");
  auto claim = [&](Net& net, uint64_t inc, const identity::NodeKey& key) {
    net.Deliver("c", Send("a", {Signed(Alive{inc, "b", "new:1", "", 1, 1}, key)}));
  };
  {
    Net net;  // the owner's signed claim moves its name, whatever state others hold it in
    for (const char* n : {"a", "b", "c"}) net.Add(n);
    net.JoinAll("a");
    net.Run(Millis(1500));
    claim(net, net["a"].Find("b")->incarnation + 1, KeyFor("b"));
    EXPECT_EQ(net["a"].Find("b")->addr, "new:1");
  }
  {
    Net net;  // dead_node_reclaim_time 0: another key never takes a dead node's name
    for (const char* n : {"a", "b", "c"}) net.Add(n);
    net.JoinAll("a");
    net.Run(Millis(1500));
    net.drop = [](const std::string& f, const std::string& t, Channel) {
      return f == "b" || t == "b";
    };
    net.Run(Millis(12000));
    ASSERT_EQ(net.StateAt("a", "b"), MemberState::kDead);
    claim(net, 50, mallory);
    EXPECT_EQ(net["a"].Find("b")->addr, "b:1");
    EXPECT_EQ(net["a"].Find("b")->key, KeyFor("b").public_key());
  }
  {
    SwimConfig cfg = SwimConfig::Lan();
    cfg.dead_node_reclaim_time = Millis(30000);
    Net net(cfg);
    for (const char* n : {"a", "b", "c"}) net.Add(n);
    net.JoinAll("a");
    net.Run(Millis(1500));
    net.drop = [](const std::string& f, const std::string& t, Channel) {
      return f == "b" || t == "b";
    };
    net.Run(Millis(12000));
    ASSERT_EQ(net.StateAt("a", "b"), MemberState::kDead);
    claim(net, 50, mallory);
    EXPECT_EQ(net["a"].Find("b")->addr, "b:1") << "dead, but not yet for the reclaim time";
    net.Run(Millis(31000));
    claim(net, 0, mallory);
    EXPECT_EQ(net["a"].Find("b")->addr, "new:1") << "dead longer than the reclaim time";
    EXPECT_EQ(net["a"].Find("b")->key, mallory.public_key());
    EXPECT_EQ(net.StateAt("a", "b"), MemberState::kAlive);
  }
  {
    Net net;  // a node that left keeps its name bound (reclaim time 0) ...
    for (const char* n : {"a", "b", "c"}) net.Add(n);
    net.JoinAll("a");
    net.Run(Millis(1500));
    net.Deliver("b", net["b"].Leave(net.now()));
    net.Run(Millis(2000));
    ASSERT_EQ(net.StateAt("a", "b"), MemberState::kLeft);
    claim(net, 0, mallory);
    EXPECT_EQ(net["a"].Find("b")->addr, "b:1");
    // ... and takes it back itself when it returns.
    net.Add("b");
    net.Deliver("b", net["b"].Join({"a:1"}, net.now()));
    net.Run(Millis(2000));
    EXPECT_EQ(net.StateAt("a", "b"), MemberState::kAlive);
  }
}

TEST(SwimTest, OnlyTheNodeItselfCanSayItLeft) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  const uint64_t inc = net["a"].Find("b")->incarnation;
  Dead unsigned_leave{inc, "b", "b", ""};
  Dead foreign_leave{inc, "b", "b", ""};
  foreign_leave.sig = KeyFor("mallory").Sign(LeaveClaimBytes(foreign_leave));
  net.Deliver("c", Send("a", {unsigned_leave, foreign_leave}));
  EXPECT_EQ(net.StateAt("a", "b"), MemberState::kAlive);
  EXPECT_EQ(net["a"].stats().claims_bad_signature, 2u);
}

TEST(SwimTest, AccusationsCannotPushAnIncarnationToTheEndOfItsRange) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  const uint64_t inc = net["c"].incarnation();
  // Told to "a": accusations at the top of the range are taken at c's own incarnation.
  net.drop = [](const std::string& from, const std::string& to, Channel) {
    return from == "a" && to == "c";  // c does not hear of it through a, for now
  };
  net.Deliver("b", Send("a", {Suspect{UINT64_MAX, "c", "b"}}));
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kSuspect);
  EXPECT_EQ(net["a"].Find("c")->incarnation, inc);
  // Told to c itself: it never signed that incarnation, so it does not jump to refute it.
  net.Deliver("b", Send("c", {Suspect{UINT64_MAX, "c", "b"}, Dead{UINT64_MAX - 1, "c", "b", ""}}));
  EXPECT_EQ(net["c"].incarnation(), inc);
  EXPECT_EQ(net["c"].stats().accusations_ignored, 2u);
  // A forged death at the top of the range: "a" marks c dead, gossip reaches c, which refutes
  // one step up and is alive everywhere again.
  net.drop = [](const std::string&, const std::string&, Channel) { return false; };
  net.Deliver("b", Send("a", {Dead{UINT64_MAX, "c", "b", ""}}));
  EXPECT_EQ(net.StateAt("a", "c"), MemberState::kDead);
  net.Run(Millis(3000));
  EXPECT_EQ(net["c"].incarnation(), inc + 1);
  for (const char* o : {"a", "b"}) {
    EXPECT_EQ(net.StateAt(o, "c"), MemberState::kAlive) << o;
    EXPECT_EQ(net[o].Find("c")->incarnation, inc + 1) << o;
  }
}

TEST(SwimTest, TheMemberTableIsBounded) {
  SwimConfig cfg = SwimConfig::Lan();
  cfg.max_members = 8;
  Net net(cfg);
  for (const char* n : {"a", "b"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(1500));
  // 100 names, each properly signed by a key of its own: only the table's room is taken.
  for (int i = 0; i < 100; ++i) {
    const std::string name = "fake-" + std::to_string(i);
    net.Deliver("b", Send("a", {Signed(Alive{0, name, name + ":1", "", 1, 1}, KeyFor(name))}));
  }
  EXPECT_EQ(net["a"].NumMembers(), 8u);
  EXPECT_EQ(net["a"].stats().members_refused, 100u - 7u);
  EXPECT_TRUE(net["a"].Find("b").has_value()) << "a real member is never pushed out";
}

TEST(SwimTest, SignatureChecksStayWithinTheirBudget) {
  SwimConfig cfg = SwimConfig::Lan();
  cfg.max_members = 16;
  cfg.max_claim_checks_per_second = 100;  // burst max(100, 2 x 16) = 100
  Net net(cfg);
  net.Add("a");
  // 1000 claims with signatures that do not verify, all at one instant.
  Alive junk = Signed(Alive{0, "x", "x:1", "", 1, 1}, KeyFor("x"));
  junk.sig[0] ^= 1;
  for (int i = 0; i < 1000; ++i) {
    junk.node = "x" + std::to_string(i);
    net.Deliver("x", Send("a", {junk}));
  }
  const SwimStats& s = net["a"].stats();
  EXPECT_EQ(s.claims_bad_signature, 100u) << "checked: the burst";
  EXPECT_EQ(s.claims_over_budget, 900u) << "dropped unchecked";
  // The budget refills with time: a real claim a second later is checked and taken.
  net.Run(Millis(1000));
  net.Deliver("y", Send("a", {Signed(Alive{0, "y", "y:1", "", 1, 1}, KeyFor("y"))}));
  EXPECT_TRUE(net["a"].Find("y").has_value());
}

TEST(SwimTest, EveryUdpPacketFitsTheBudget) {
  Net net;
  std::vector<std::string> names;
  for (int i = 0; i < 60; ++i) names.push_back("node-with-a-long-name-" + std::to_string(i));
  for (const auto& n : names) net.Add(n, std::string(200, 'm'));
  // The largest UDP packet any node produces while 60 nodes join and gossip.
  for (const auto& n : names) {
    if (n != names[0]) net.Deliver(n, net[n].Join({names[0] + ":1"}, net.now()));
  }
  net.Run(Millis(3000));
  const size_t largest = net.largest_udp;
  EXPECT_GT(largest, 700u) << "gossip was packed";
  EXPECT_LE(largest, static_cast<size_t>(SwimConfig::Lan().udp_buffer_size));
}

TEST(SwimTest, BroadcastsStopAfterTheRetransmitLimit) {
  Net net;
  for (const char* n : {"a", "b", "c"}) net.Add(n);
  net.JoinAll("a");
  net.Run(Millis(5000));
  EXPECT_EQ(net["a"].QueuedBroadcasts(), 0u) << "every update was sent its limit and dropped";
  const int before = net.packets_sent;
  net.Run(Millis(2000));
  // At rest: about one ping and one ack per node per second, no gossip.
  EXPECT_LE(net.packets_sent - before, 3 * 2 * 2 + 2);
}

TEST(SwimTest, BootstrapAdoptsAConvergedClusterWithoutGossip) {
  Net net;
  PushPull snapshot;
  for (const char* n : {"a", "b", "c"}) {
    net.Add(n, "m");
    snapshot.members.push_back(
        PushPullMember{n, std::string(n) + ":1", 0, MemberState::kAlive, "m"});
  }
  for (const char* n : {"a", "b", "c"}) {
    Output out = net[n].Bootstrap(snapshot, net.now());
    EXPECT_TRUE(out.packets.empty());
    EXPECT_EQ(out.events.size(), 2u) << "each other member joined";
    EXPECT_TRUE(net[n].joined());
    EXPECT_EQ(net[n].QueuedBroadcasts(), 0u) << "nothing to gossip: the cluster converged";
    EXPECT_EQ(net[n].NumAlive(), 3);
    EXPECT_EQ(net[n].NumMembers(), 2u);
  }
  const std::optional<MemberInfo> b = net["a"].Find("b");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->addr, "b:1");
  EXPECT_EQ(b->meta, "m");
  EXPECT_FALSE(net["a"].Find("a").has_value()) << "this node is not in its own table";
  // It runs like any cluster: probes succeed and nobody is suspected.
  net.Run(Millis(5000));
  for (const char* o : {"a", "b", "c"}) {
    for (const char* n : {"a", "b", "c"}) {
      if (std::string(o) == n) continue;
      EXPECT_EQ(net.StateAt(o, n), MemberState::kAlive) << o << n;
    }
  }
}

TEST(SwimTest, MalformedPacketsAreCountedAndIgnored) {
  Net net;
  Swim& a = net.Add("a");
  for (std::string junk : {std::string(), std::string("\x01"), std::string("\x02\x01"),
                           std::string("\x01\x09\xff"), std::string("\x01\x06\x05\x01")}) {
    Output o = a.HandlePacket("x:1", junk, Channel::kUdp, net.now());
    EXPECT_TRUE(o.packets.empty());
  }
  EXPECT_EQ(a.stats().malformed_in, 5u);
  EXPECT_EQ(a.NumAlive(), 1);
}

TEST(WireTest, EveryMessageRoundTrips) {
  const std::vector<Message> msgs = {
      Ping{7, "b", "a", "10.0.0.1:7946"},
      IndirectPing{8, "c", "10.0.0.3:7946", true, "a", "10.0.0.1:7946"},
      Ack{9},
      Nack{10},
      Suspect{UINT64_MAX, "c", "a"},
      Alive{4, "c", "10.0.0.3:7946", std::string("meta\0bytes", 10), 1, 2},
      Signed(Alive{1ull << 40, "c", "10.0.0.3:7946", "m", 1, 1}, KeyFor("c")),
      Dead{5, "c", "c", std::string(64, 's')},
      PushPull{true,
               {{"a", "1:1", 1, MemberState::kAlive, "m"},
                {"b", "2:2", 9, MemberState::kLeft, "", 1, 1, std::string(32, 'k'),
                 std::string(64, 's')}}},
      Load{"b", 1ull << 40, 1234, "q=1"},
      Watch{"a"},
      Digest{{{"a", 1ull << 40, MemberState::kAlive}, {"b", 0, MemberState::kLeft}}},
      DigestReply{{{"b", "2:2", 9, MemberState::kSuspect, "m", 1, 3}}, {"a", "c"}},
      DigestReply{},
  };
  for (const Message& m : msgs) {
    auto d = DecodePacket(EncodePacket({EncodeMessage(m)}));
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_EQ(d->messages.size(), 1u);
    EXPECT_EQ(EncodeMessage(d->messages[0]), EncodeMessage(m));
  }
  std::vector<std::string> encoded;
  for (const Message& m : msgs) encoded.push_back(EncodeMessage(m));
  auto compound = DecodePacket(EncodePacket(encoded));
  ASSERT_TRUE(compound.ok());
  EXPECT_EQ(compound->messages.size(), msgs.size());
}

TEST(WireTest, UnknownTypesInsideACompoundAreSkipped) {
  std::string future = std::string(1, static_cast<char>(200)) + "new";
  auto d = DecodePacket(EncodePacket({EncodeMessage(Ack{1}), future}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->messages.size(), 1u);
  EXPECT_EQ(d->unknown_skipped, 1);
  EXPECT_FALSE(DecodePacket(EncodePacket({future})).ok()) << "alone, an unknown type is an error";
}

TEST(WireTest, RejectsMalformedPackets) {
  const std::string ok = EncodePacket({EncodeMessage(Alive{4, "c", "1.2.3.4:5", "m", 1, 1})});
  for (size_t cut = 0; cut < ok.size(); ++cut) {
    EXPECT_FALSE(DecodePacket(ok.substr(0, cut)).ok()) << "truncated at " << cut;
  }
  EXPECT_FALSE(DecodePacket(ok + "x").ok()) << "trailing bytes";
  std::string wrong_version = ok;
  wrong_version[0] = 9;
  EXPECT_FALSE(DecodePacket(wrong_version).ok());
  // A name longer than the limit.
  EXPECT_FALSE(
      DecodePacket(EncodePacket({EncodeMessage(Suspect{1, std::string(200, 'x'), "a"})})).ok());
  // A push-pull claiming more members than its bytes could hold.
  std::string pp = "\x02\x08\x00";
  pp += "\xff\xff\x03";
  EXPECT_FALSE(DecodePacket(pp).ok());
  // Keys and signatures are whole or absent.
  Alive short_key{1, "c", "1.2.3.4:5", "m", 1, 1, std::string(31, 'k'), ""};
  EXPECT_FALSE(DecodePacket(EncodePacket({EncodeMessage(short_key)})).ok());
  Alive long_sig{1, "c", "1.2.3.4:5", "m", 1, 1, std::string(32, 'k'), std::string(65, 's')};
  EXPECT_FALSE(DecodePacket(EncodePacket({EncodeMessage(long_sig)})).ok());
  // A varint that never ends.
  EXPECT_FALSE(DecodePacket(std::string("\x02\x03") + std::string(12, '\xff')).ok());
  // Digests: a count the bytes cannot hold, an unknown state, a digest reply cut short.
  EXPECT_FALSE(DecodePacket(std::string("\x02\x0c\xff\xff\x03", 5)).ok());
  EXPECT_FALSE(DecodePacket(std::string("\x02\x0c\x01\x01x\x01\x07", 7)).ok());
  const std::string reply =
      EncodePacket({EncodeMessage(DigestReply{{{"b", "2:2", 9, MemberState::kAlive}}, {"a"}})});
  for (size_t cut = 2; cut < reply.size(); ++cut) {
    EXPECT_FALSE(DecodePacket(reply.substr(0, cut)).ok()) << "truncated at " << cut;
  }
}

}  // namespace
}  // namespace hivemesh::membership
