// GossipNode over real loopback sockets: joining with keys (and across a key rotation), frames of
// several MiB, and what the transport refuses (bad frames, silent peers, too many connections,
// misdirected packets, a plaintext node joining a keyed mesh). Peers that misbehave are raw
// sockets of the test.
#include "membership/gossip_node.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "membership/stream_frame.h"

namespace hivemesh::membership {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

bool WaitFor(const std::function<bool()>& condition, milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return condition();
}

Keyring Ring(std::vector<std::string> keys) {
  absl::StatusOr<Keyring> ring = Keyring::Create(std::move(keys), "");
  EXPECT_TRUE(ring.ok()) << ring.status();
  return *ring;
}

const std::string kKeyA(32, 'a');
const std::string kKeyB(32, 'b');

GossipOptions Options(const std::string& name, std::optional<Keyring> ring,
                      std::vector<std::string> join = {}) {
  GossipOptions o;
  o.name = name;
  o.bind_address = "127.0.0.1:0";
  o.swim = SwimConfig::Local();
  o.keyring = std::move(ring);
  o.join = std::move(join);
  o.join_retry = milliseconds(200);
  return o;
}

std::unique_ptr<GossipNode> Start(GossipOptions options, Clock& clock = SystemClock::Get()) {
  absl::StatusOr<std::unique_ptr<GossipNode>> node =
      GossipNode::Create(std::move(options), "", clock);
  EXPECT_TRUE(node.ok()) << node.status();
  if (!node.ok()) return nullptr;
  (*node)->Start(nullptr);
  return *std::move(node);
}

bool SeesAlive(const GossipNode& node, const std::string& name) {
  for (const MemberInfo& m : node.Members()) {
    if (m.name == name) return m.state == MemberState::kAlive;
  }
  return false;
}

int Port(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

// A TCP connection from the test to `address` (127.0.0.1:port). -1 on failure.
int Connect(const std::string& address) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(Port(address)));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// What the peer sends until it closes the connection, or nullopt if it is still open after
// `timeout`.
std::optional<std::string> ReadUntilClosed(int fd, milliseconds timeout) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
  return std::nullopt;
}

void SendUdp(const std::string& address, std::string_view packet) {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(Port(address)));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  close(fd);
}

int64_t UnixMillis() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST(GossipNodeTest, KeyedNodesJoinAcrossAKeyRotation) {
  // Mid-rotation: a still seals with the old key, b already with the new one; each opens both.
  auto a = Start(Options("a", Ring({kKeyA, kKeyB})));
  ASSERT_TRUE(a);
  auto b = Start(Options("b", Ring({kKeyB, kKeyA}), {a->address()}));
  ASSERT_TRUE(b);
  EXPECT_TRUE(a->encrypted());
  EXPECT_TRUE(WaitFor([&] { return SeesAlive(*a, "b") && SeesAlive(*b, "a"); }, seconds(10)));
  EXPECT_TRUE(b->join_status().ok());
  // Probes and push-pulls keep flowing both ways: nothing is refused.
  EXPECT_TRUE(WaitFor([&] { return a->Stats().swim.acks_received >= 3; }, seconds(10)));
  EXPECT_TRUE(WaitFor([&] { return b->Stats().swim.acks_received >= 3; }, seconds(10)));
  EXPECT_EQ(a->Stats().drops.total(), 0u);
  EXPECT_EQ(b->Stats().drops.total(), 0u);
  // A node with only the old key reads a but not b: it cannot join through b.
  auto old = Start(Options("old", Ring({kKeyA}), {b->address()}));
  ASSERT_TRUE(old);
  EXPECT_TRUE(WaitFor([&] { return old->Stats().tcp_exchanges_failed >= 1; }, seconds(10)));
  EXPECT_FALSE(old->joined());
}

TEST(GossipNodeTest, AFrameOfSeveralMiBFromAKeyHolderIsRead) {
  for (bool keyed : {true, false}) {
    auto node = Start(Options("n", keyed ? std::optional<Keyring>(Ring({kKeyA})) : std::nullopt));
    ASSERT_TRUE(node);
    Envelope sender(keyed ? std::optional<Keyring>(Ring({kKeyA})) : std::nullopt, RandomBootId());
    // 6 MiB that is no gossip message: the transport reads and authenticates all of it and
    // hands it to the state machine, whose decoder refuses it (counted as malformed there).
    const std::string frame = EncodeFrame(sender, std::string(6 << 20, '\x01'),
                                          Recipient::Address(node->address()), UnixMillis());
    const int fd = Connect(node->address());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, frame));
    EXPECT_TRUE(ReadUntilClosed(fd, seconds(10)).has_value());
    close(fd);
    EXPECT_TRUE(WaitFor([&] { return node->Stats().swim.malformed_in >= 1; }, seconds(10)))
        << (keyed ? "keyed" : "plaintext");
    const GossipStats s = node->Stats();
    EXPECT_GE(s.tcp_bytes_in, frame.size());
    EXPECT_EQ(s.drops.total(), 0u);
    EXPECT_TRUE(WaitFor([&] { return node->Stats().tcp_buffered_bytes == 0; }, seconds(5)));
  }
}

TEST(GossipNodeTest, BadFramesCloseTheirConnectionAtOnce) {
  GossipOptions o = Options("n", Ring({kKeyA}));
  // Long deadlines: only an immediate close is seen within the test's wait.
  o.swim.tcp_timeout = seconds(60);
  o.tcp_head_timeout = seconds(60);
  auto node = Start(std::move(o));
  ASSERT_TRUE(node);
  struct Case {
    std::string bytes;
    std::string answer;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", ""},
      {std::string("\x00\x00\x00\x05hello", 9), ""},  // framing version 1
      // Plaintext at a keyed node, and a sealed head no key opens: the notice.
      {std::string("HM\x02P\x00\x00\x00\x05hello", 13), std::string(EncryptionRequiredNotice())},
      {std::string("HM\x02S\x00\x50", 6) + std::string(0x50, 'x'),
       std::string(EncryptionRequiredNotice())},
      // The notice is never a request.
      {std::string(EncryptionRequiredNotice()), ""},
  };
  for (const Case& c : cases) {
    const int fd = Connect(node->address());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, c.bytes));
    const std::optional<std::string> got = ReadUntilClosed(fd, seconds(10));
    close(fd);
    ASSERT_TRUE(got.has_value()) << "still open after a bad frame: " << c.bytes;
    EXPECT_EQ(*got, c.answer);
  }
  const GossipStats s = node->Stats();
  EXPECT_EQ(s.drops.bad_frame, 3u);
  EXPECT_EQ(s.drops.unauthenticated, 2u);
  EXPECT_EQ(s.drops.timeout, 0u);
}

TEST(GossipNodeTest, SilentPeersAreCutByTheHeadDeadlineAndCounted) {
  GossipOptions o = Options("n", std::nullopt);
  o.swim.tcp_timeout = seconds(60);
  o.tcp_head_timeout = milliseconds(200);
  auto node = Start(std::move(o));
  ASSERT_TRUE(node);
  const int silent = Connect(node->address());
  // A head that starts and never ends.
  const int slow = Connect(node->address());
  ASSERT_TRUE(SendAll(slow, "HM"));
  for (int fd : {silent, slow}) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(ReadUntilClosed(fd, seconds(30)).has_value());
    EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(20));
    close(fd);
  }
  EXPECT_EQ(node->Stats().drops.timeout, 2u);
  EXPECT_TRUE(WaitFor([&] { return node->Stats().tcp_connections == 0; }, seconds(5)));
}

TEST(GossipNodeTest, ConnectionsOverThePerSourceLimitAreClosed) {
  GossipOptions o = Options("n", std::nullopt);
  o.swim.tcp_timeout = seconds(60);
  o.tcp_head_timeout = seconds(60);
  o.max_tcp_connections_per_source = 2;
  auto node = Start(std::move(o));
  ASSERT_TRUE(node);
  const int first = Connect(node->address());
  const int second = Connect(node->address());
  ASSERT_TRUE(WaitFor([&] { return node->Stats().tcp_connections == 2; }, seconds(5)));
  const int third = Connect(node->address());
  EXPECT_TRUE(ReadUntilClosed(third, seconds(10)).has_value());
  EXPECT_EQ(node->Stats().drops.source_connection_limit, 1u);
  // The first two are still open.
  EXPECT_FALSE(ReadUntilClosed(first, milliseconds(100)).has_value());
  close(first);
  close(second);
  close(third);
  EXPECT_TRUE(WaitFor([&] { return node->Stats().tcp_connections == 0; }, seconds(5)));
  // And a place is free again.
  const int fourth = Connect(node->address());
  EXPECT_TRUE(WaitFor([&] { return node->Stats().tcp_connections == 1; }, seconds(5)));
  close(fourth);
}

TEST(GossipNodeTest, SealedPacketsForAnotherAddressAreDroppedAsMisdirected) {
  auto node = Start(Options("n", Ring({kKeyA})));
  ASSERT_TRUE(node);
  Envelope sender(Ring({kKeyA}), RandomBootId());
  const std::string elsewhere = "127.0.0.1:" + std::to_string(Port(node->address()) + 1);
  SendUdp(node->address(), sender.Wrap("\x01x", Recipient::Address(elsewhere), UnixMillis()));
  EXPECT_TRUE(WaitFor([&] { return node->Stats().drops.misdirected == 1; }, seconds(5)));
  // Addressed to it, the same kind of packet passes the envelope (and fails to decode).
  SendUdp(node->address(), sender.Wrap("\x01x", Recipient::Address(node->address()), UnixMillis()));
  EXPECT_TRUE(WaitFor([&] { return node->Stats().swim.malformed_in == 1; }, seconds(5)));
  // Over TCP too: a frame sealed for another address is dropped without an answer.
  const int fd = Connect(node->address());
  ASSERT_TRUE(
      SendAll(fd, EncodeFrame(sender, "\x01x", Recipient::Address(elsewhere), UnixMillis())));
  const std::optional<std::string> answer = ReadUntilClosed(fd, seconds(10));
  close(fd);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(*answer, "");
  EXPECT_EQ(node->Stats().drops.misdirected, 2u);
}

TEST(GossipNodeTest, APlaintextNodeStopsJoiningAKeyedMesh) {
  auto seed = Start(Options("seed", Ring({kKeyA})));
  ASSERT_TRUE(seed);
  absl::Mutex mu;
  std::vector<std::string> refused_by;  // guarded by mu
  GossipOptions o = Options("plain", std::nullopt, {seed->address()});
  o.on_encryption_required = [&](const std::string& s) {
    absl::MutexLock lock(&mu);
    refused_by.push_back(s);
  };
  auto plain = Start(std::move(o));
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->encrypted());
  ASSERT_TRUE(WaitFor([&] { return !plain->join_status().ok(); }, seconds(10)));
  EXPECT_NE(std::string(plain->join_status().message()).find(seed->address()), std::string::npos);
  // Several retry periods later: called once, nothing joined.
  std::this_thread::sleep_for(milliseconds(600));
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(refused_by, std::vector<std::string>{seed->address()});
  }
  EXPECT_FALSE(plain->joined());
  EXPECT_EQ(seed->Members().size(), 1u);
  EXPECT_GE(seed->Stats().drops.unauthenticated, 1u);

  // A keyed node with another key gets the same notice and takes it for a failed exchange.
  auto wrong = Start(Options("wrong", Ring({kKeyB}), {seed->address()}));
  ASSERT_TRUE(wrong);
  EXPECT_TRUE(WaitFor([&] { return wrong->Stats().tcp_exchanges_failed >= 2; }, seconds(10)));
  EXPECT_TRUE(wrong->join_status().ok());
  EXPECT_FALSE(wrong->joined());
  EXPECT_EQ(seed->Members().size(), 1u);
}

// Options for a node whose state machine does nothing of its own accord for hours of its
// clock: no probe, gossip round, push-pull or reconnect falls due unless the clock is moved.
GossipOptions Still(const std::string& name, std::vector<std::string> join = {}) {
  GossipOptions o = Options(name, std::nullopt, std::move(join));
  o.swim.probe_interval = std::chrono::hours(10);
  o.swim.probe_timeout = std::chrono::hours(5);
  o.swim.gossip_interval = std::chrono::hours(10);
  o.swim.push_pull_interval = std::chrono::hours(10);
  o.swim.reconnect_interval = std::chrono::hours(10);
  return o;
}

std::optional<MemberInfo> Member(const GossipNode& node, const std::string& name) {
  for (const MemberInfo& m : node.Members()) {
    if (m.name == name) return m;
  }
  return std::nullopt;
}

TEST(GossipNodeTest, TheStateMachineRunsOnTheNodesClock) {
  // Weeks past any real steady clock of this machine: a time only the manual clock can give.
  ManualClock clock(SteadyTime(std::chrono::hours(1000)));
  auto a = Start(Still("a"), clock);
  ASSERT_TRUE(a);
  auto b = Start(Still("b", {a->address()}), clock);
  ASSERT_TRUE(b);
  ASSERT_TRUE(WaitFor([&] { return SeesAlive(*a, "b") && SeesAlive(*b, "a"); }, seconds(10)));
  EXPECT_EQ(Member(*a, "b")->since, clock.Now());
  clock.Advance(seconds(5));
  b->SetLoad("queue=1");
  EXPECT_EQ(Member(*b, "b")->load_received, clock.Now());
}

TEST(GossipNodeTest, LeaveAndStopGivesUpAtItsDeadlineOnTheNodesClock) {
  ManualClock clock(SteadyTime(std::chrono::hours(1000)));
  auto a = Start(Still("a"), clock);
  ASSERT_TRUE(a);
  auto b = Start(Still("b", {a->address()}), clock);
  ASSERT_TRUE(b);
  ASSERT_TRUE(WaitFor([&] { return SeesAlive(*a, "b") && SeesAlive(*b, "a"); }, seconds(10)));
  // The join's eager gossip round falls due 5 ms (of the clock) after it: let it go now, so
  // that nothing would carry b's leave until hours from now.
  const uint64_t sent = b->Stats().swim.packets_out;
  clock.Advance(seconds(1));
  ASSERT_TRUE(WaitFor([&] { return b->Stats().swim.packets_out > sent; }, seconds(10)));

  std::atomic<bool> stopped{false};
  std::thread leaver([&] {
    b->LeaveAndStop(seconds(30));
    stopped = true;
  });
  // b waits on its clock: its leave is queued, and nothing sends it while the clock stands.
  ASSERT_TRUE(WaitFor([&] { return clock.waiters() == 1; }, seconds(10)));
  EXPECT_FALSE(stopped);
  clock.Advance(seconds(31));
  EXPECT_TRUE(WaitFor([&] { return stopped.load(); }, seconds(10)));
  leaver.join();
  // It stopped at the deadline, not because the news spread: a never heard that b left.
  EXPECT_EQ(Member(*a, "b")->state, MemberState::kAlive);
}

TEST(GossipNodeTest, OptionsAreValidated) {
  GossipOptions o = Options("n", std::nullopt);
  EXPECT_TRUE(o.Validate().ok());
  o.tcp_buffer_bytes = o.max_tcp_frame_bytes;  // no room beside the share for small frames
  EXPECT_FALSE(o.Validate().ok());
  o = Options("n", std::nullopt);
  o.max_tcp_connections_per_source = 0;
  EXPECT_FALSE(o.Validate().ok());
  o = Options("n", std::nullopt);
  o.accept_backoff_max = milliseconds(1);
  EXPECT_FALSE(o.Validate().ok());
  o = Options("n", std::nullopt);
  o.bind_address = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<GossipNode>> unspecified =
      GossipNode::Create(o, "", SystemClock::Get());
  ASSERT_FALSE(unspecified.ok());
  EXPECT_NE(std::string(unspecified.status().message()).find("not an address peers can reach"),
            std::string::npos);
}

}  // namespace
}  // namespace hivemesh::membership
