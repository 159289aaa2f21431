// Internal to the gossip transport: the GossipNode implementation, whose node, UDP and joining
// live in gossip_node.cc and whose TCP exchanges (limits, frames, deadlines, the accept loop) live
// in gossip_tcp.cc. Includes Asio: include it from those two files only.
#pragma once

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "base/connection_limits.h"
#include "base/memory_budget.h"
#include "base/rejections.h"
#include "base/strings.h"
#include "membership/gossip_node.h"
#include "membership/stream_frame.h"
#include "transport/io_stream.h"

namespace hivemesh::membership::gossip_internal {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;

// Wall-clock milliseconds since the Unix epoch (sealed packets' timestamps).
int64_t UnixMillis();
absl::StatusOr<std::pair<asio::ip::address, uint16_t>> ParseHostPort(const std::string& s);
// The one spelling of an address that sender and receiver agree on: what the receiver
// advertises, and what a sealed packet to it names.
std::string Canonical(const asio::ip::address& addr, uint16_t port);

// One TCP exchange: a request frame and a reply frame, with a deadline for the whole of it and,
// on the serving side, one for the request's head.
struct TcpExchange {
  TcpExchange(asio::io_context& ioc, size_t max_frame_bytes, MemoryBudget::Reservation budget,
              Recipient expect)
      : stream(ioc.get_executor()),
        deadline(ioc),
        head_deadline(ioc),
        reader(max_frame_bytes, std::move(budget)),
        expect(std::move(expect)) {}
  IoStream stream;  // plain, or mutual TLS (GossipOptions::tls) once the handshake is done
  asio::steady_timer deadline;
  asio::steady_timer head_deadline;
  FrameReader reader;
  Recipient expect;             // whom the incoming frame must be addressed to
  ConnectionLimits::Slot slot;  // served exchanges: their place under the connection limits
  std::string peer;             // host:port: where it came from, or where we sent it
  std::string out;              // the frame being written
  bool served = false;          // a peer's exchange (else one this node started)
  bool join = false;            // our exchange: a join sent to a seed
  bool done = false;            // finished or failed: the deadlines have nothing left to cut
  // Watch connections (SwimConfig::watchers): the member watched (ours) or watching (served).
  std::string watch;
  bool greeted = false;     // ours: the member answered; its close now means something
  bool purposeful = false;  // this node closes it on purpose: its end means nothing
  char byte = 0;            // the one byte a watch may carry: a goodbye
};

// How reading one frame ended.
struct FrameOutcome {
  bool io_error = false;  // the connection failed or was closed (by a deadline, or the peer)
  absl::Status status;    // a refused frame: why (counted already)
  DropReason why = DropReason::kBadFrame;
  FrameReader::Result result = FrameReader::Result::kNeedMore;
};

// Thread safety: the public methods (GossipNode's) may be called from any thread; everything
// else runs on the node's own thread (the io_context's), touching what other threads read only
// under mu_.
class GossipNodeImpl final : public GossipNode {
 public:
  GossipNodeImpl(GossipOptions options, std::string meta, std::string address, Clock& clock)
      : options_(std::move(options)),
        clock_(clock),
        address_(std::move(address)),
        udp_(ioc_),
        acceptor_(ioc_),
        timer_(ioc_),
        join_timer_(ioc_),
        accept_timer_(ioc_),
        accept_backoff_(options_.accept_backoff_min),
        budget_(MemoryBudget::Create(options_.tcp_buffer_bytes)),
        limits_(static_cast<int>(options_.max_tcp_connections),
                static_cast<int>(options_.max_tcp_connections_per_source)),
        encrypted_(options_.keyring.has_value()),
        envelope_(options_.keyring, RandomBootId()) {
    swim_ = std::make_unique<Swim>(options_.swim, options_.name, address_, std::move(meta),
                                   options_.node_key, RandomBootId(), clock_.Now());
  }

  ~GossipNodeImpl() override { Stop(); }

  absl::Status Bind(const asio::ip::address& addr, uint16_t port);
  void ResetSwim(std::string meta);
  std::string address() const override { return address_; }
  bool encrypted() const override { return encrypted_; }

  void Start(EventCallback on_event) override;
  void LeaveAndStop(std::chrono::milliseconds timeout) override;
  void Stop() override;
  void UpdateMeta(std::string meta) override;
  void PushSelfToAll() override;
  void RevokeKey(std::string key) override;
  absl::Status SetKeyring(Keyring keyring) override;
  void SetLoad(std::string payload) override;
  std::vector<MemberInfo> Members() const override;
  std::optional<MemberInfo> Find(std::string_view name) const override;
  GossipStats Stats() const override;

  // A node given no seeds started the mesh: it counts as joined.
  bool joined() const override;
  absl::Status join_status() const override;

 private:
  // Runs one step of the state machine under mu_, then wakes LeaveAndStop's wait.
  template <typename Fn>
  Output Call(Fn&& fn) {
    absl::MutexLock lock(&mu_);
    Output out = fn(*swim_);
    changed_.SignalAll();
    return out;
  }

  // Sends what the state machine produced and reports its events. Runs on the gossip thread.
  // `join`: the TCP packets are joins to seeds.
  void Process(Output out, bool join = false);
  void Reschedule();
  void Join();

  // A seed answered our join: its mesh requires encryption, and we have no keys. Final.
  void EncryptionRequired(const std::string& seed);

  // Counts nothing (the caller has); logs at most once a second per reason.
  void Refused(DropReason why, std::string_view peer, std::string_view detail);
  void Count(DropReason why);

  // ---------------------------------------------------------------------------------------
  // UDP

  void SendUdp(const std::string& to, const std::string& packet);
  void Receive();

  // ---------------------------------------------------------------------------------------
  // TCP: reading one frame

  // Reads one frame from x->socket, then calls done(FrameOutcome). Cancels the head deadline
  // once the head is in.
  template <typename Done>
  void ReadFrame(const std::shared_ptr<TcpExchange>& x, Done done);
  void CountTcpIn(size_t bytes);

  // Closes the exchange now: the deadlines stop, the socket closes, its place is freed.
  static void Finish(const std::shared_ptr<TcpExchange>& x);

  // Cuts the exchange when `timer` fires: a served one counts a timeout, ours fails.
  void ArmDeadline(const std::shared_ptr<TcpExchange>& x, asio::steady_timer& timer,
                   std::chrono::milliseconds after, const char* what);

  // ---------------------------------------------------------------------------------------
  // TCP: serving a peer's exchange

  void Accept();
  void Admit(tcp::socket socket);
  // A peer's exchange over mutual TLS (its first byte, kTlsExchangeByte, is read): the
  // handshake, the check of its certificate (a member's), then its request frame.
  void ServeTls(const std::shared_ptr<TcpExchange>& x);
  // Our exchange, connected: over mutual TLS when the node has TLS settings (kTlsExchangeByte,
  // the handshake, the check that the peer is a member, `member` if given), then `then()`;
  // plain at once otherwise.
  template <typename Then>
  void SecureThen(const std::shared_ptr<TcpExchange>& x, std::string member, Then then);
  void Serve(const std::shared_ptr<TcpExchange>& x, FrameOutcome o);
  static void WriteAndFinish(const std::shared_ptr<TcpExchange>& x);

  // ---------------------------------------------------------------------------------------
  // TCP: our exchange (connect, send a frame, read the reply frame into the state machine)

  void SendTcp(const std::string& to, std::string packet, bool join);
  void OnReply(const std::shared_ptr<TcpExchange>& x, FrameOutcome o);
  void Failed(const std::shared_ptr<TcpExchange>& x);

  // ---------------------------------------------------------------------------------------
  // TCP: watch connections (gossip_tcp.cc). Gossip thread only.

  // Opens watches to the members the state machine names and closes the others, and closes the
  // watches served to members no longer alive; at most every probe interval unless membership
  // changed (`changed`).
  void UpdateWatches(bool changed);
  void OpenWatch(const WatchTarget& target);
  void OnWatchReply(const std::shared_ptr<TcpExchange>& x, FrameOutcome o);
  // Waits for the watch's end: a goodbye byte or a close.
  void ReadWatch(const std::shared_ptr<TcpExchange>& x);
  // Our watch `x` ended; `silent`: closed by the member's side without a goodbye.
  void WatchEnded(const std::shared_ptr<TcpExchange>& x, bool silent);
  // Serves a member's watch on `x` after its first frame: writes `reply`, then holds it open.
  void ServeWatch(const std::shared_ptr<TcpExchange>& x, std::string reply);
  // Writes a goodbye on every watch served and closes them (a leave: not a crash).
  void SayGoodbyes();

  // The log key of notices received (DropReason keys come first).
  static constexpr size_t kNoticeLogKey = kDropReasonCount;

  GossipOptions options_;
  Clock& clock_;  // the state machine's time (sealed packets' timestamps are wall-clock time)
  std::string address_;
  asio::io_context ioc_;
  udp::socket udp_;
  tcp::acceptor acceptor_;
  asio::steady_timer timer_;
  asio::steady_timer join_timer_;
  asio::steady_timer accept_timer_;
  std::chrono::milliseconds accept_backoff_;  // the wait after the next accept failure
  std::array<char, 65536> udp_buf_{};
  udp::endpoint udp_from_;
  std::thread thread_;
  EventCallback on_event_;
  RateLimitedLog log_;
  // Bytes all gossip TCP exchanges buffer (GossipOptions::tcp_buffer_bytes).
  const std::shared_ptr<MemoryBudget> budget_;
  ConnectionLimits limits_;
  const bool encrypted_;  // gossip is sealed (a keyring is configured)
  // Watches (gossip thread only): ours by member, served by watcher; reconnect back-off.
  std::map<std::string, std::shared_ptr<TcpExchange>> watches_;
  std::map<std::string, std::shared_ptr<TcpExchange>> served_watches_;
  std::map<std::string, SteadyTime> watch_tried_;
  SteadyTime next_watch_update_;
  std::atomic<uint64_t> watching_{0}, watched_by_{0};
  std::atomic<bool> stopping_{false};  // LeaveAndStop has said goodbye: no new watches
  // Gossip thread only: the last TLS session with each peer address, resumed by the next
  // exchange there (at most kMaxTlsSessions addresses; past that the memory starts over).
  static constexpr size_t kMaxTlsSessions = 1024;
  std::map<std::string, std::shared_ptr<SSL_SESSION>> tls_sessions_;
  void KeepTlsSession(const std::shared_ptr<TcpExchange>& x);

  // The state machine, the envelope and the counters are touched by the gossip thread and by
  // readers (Members, Stats, SetLoad) from other threads.
  mutable absl::Mutex mu_;
  absl::CondVar changed_;  // signalled after every step of the state machine (Call)
  std::unique_ptr<Swim> swim_ ABSL_GUARDED_BY(mu_);
  Envelope envelope_ ABSL_GUARDED_BY(mu_);
  GossipStats counters_ ABSL_GUARDED_BY(mu_);
  DropCounters drops_ ABSL_GUARDED_BY(mu_);  // the transport's; the envelope counts its own
  absl::Status join_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hivemesh::membership::gossip_internal
