#include "bus/mesh_delivery.h"

#include <algorithm>
#include <deque>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "bus/topic.h"
#include "transport/peer_client.h"

namespace hivemesh::bus {

// A request to a peer, for one generation of it.
struct Batch {
  std::string name;
  uint64_t generation = 0;
  PeerRequest request;
};

struct MeshDelivery::State {
  struct Peer {
    uint64_t generation = 0;  // which Peer a callback was for (a peer may leave and come back)
    std::string address;
    std::vector<std::string> filters;
    // Documents (shared by the peers that want them); the first `in_flight` are being sent.
    std::deque<std::shared_ptr<const std::string>> queue;
    size_t queue_bytes = 0;  // of the documents in `queue`
    size_t in_flight = 0;
    bool sending = false;
    SteadyTime retry_at{};   // after a failure: not sent again before
    size_t batch_limit = 0;  // insights per batch: max_batch, halved by each 413 of the peer
  };

  State(PeerClient* c, const Clock& k, MeshDeliveryOptions o) : client(c), clock(k), options(o) {}

  // Adds `name`'s next batch to `out`, if one goes now (something waits, nothing is in flight,
  // no failure's pause is under way).
  void NextBatch(const std::string& name, Peer& peer, std::vector<Batch>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (stopped || peer.sending || peer.queue.empty() || clock.Now() < peer.retry_at) return;
    PeerRequest r;
    r.address = peer.address;
    r.peer_node = name;
    r.method = "POST";
    r.target = std::string(kDeliverPath);
    r.headers.emplace_back("Content-Type", "application/x-ndjson");
    r.timeout = options.timeout;
    size_t n = 0;
    const size_t limit = peer.batch_limit > 0 ? peer.batch_limit : options.max_batch;
    for (const std::shared_ptr<const std::string>& document : peer.queue) {
      if (n == limit || (n > 0 && r.body.size() + document->size() + 1 > options.max_batch_bytes)) {
        break;
      }
      AppendToBatch(r.body, *document);
      ++n;
    }
    peer.in_flight = n;
    peer.sending = true;
    out.push_back(Batch{name, peer.generation, std::move(r)});
  }

  // Removes `n` documents from the front of `peer`'s queue, or the one at `at`.
  static void EraseFront(Peer& peer, size_t n) {
    for (size_t i = 0; i < n && !peer.queue.empty(); ++i) {
      peer.queue_bytes -= peer.queue.front()->size();
      peer.queue.pop_front();
    }
  }
  static void EraseAt(Peer& peer, size_t at) {
    peer.queue_bytes -= peer.queue[at]->size();
    peer.queue.erase(peer.queue.begin() + static_cast<ptrdiff_t>(at));
  }

  PeerClient* const client;
  const Clock& clock;
  const MeshDeliveryOptions options;
  mutable absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  uint64_t generations ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, Peer> peers ABSL_GUARDED_BY(mu);
  Stats stats ABSL_GUARDED_BY(mu);
};

namespace {

using State = MeshDelivery::State;

void SendBatches(const std::shared_ptr<State>& state, std::vector<Batch> batches);

// What a peer's answer to a batch means: taken, to be tried again, or refused for good.
enum class Outcome { kTaken, kAgain, kRefused, kSmaller };

Outcome OutcomeOf(const absl::StatusOr<PeerResponse>& answer) {
  if (!answer.ok()) return Outcome::kAgain;
  const int status = answer->status;
  if (status >= 200 && status < 300) return Outcome::kTaken;
  // 403: the peer has not learnt this member yet (it will within a few gossip rounds).
  if (status == 403 || status == 408 || status == 429 || status >= 500) return Outcome::kAgain;
  return Outcome::kRefused;
}

void Answered(const std::weak_ptr<State>& weak, const std::string& name, uint64_t generation,
              const absl::StatusOr<PeerResponse>& answer) {
  const std::shared_ptr<State> state = weak.lock();
  if (state == nullptr) return;
  std::vector<Batch> next;
  {
    absl::MutexLock lock(&state->mu);
    auto it = state->peers.find(name);
    if (state->stopped || it == state->peers.end() || it->second.generation != generation) return;
    State::Peer& peer = it->second;
    peer.sending = false;
    const size_t n = std::min(peer.in_flight, peer.queue.size());
    peer.in_flight = 0;
    // 413: the peer takes smaller bodies (its max_body_bytes): the same insights go in halves.
    const bool too_large = answer.ok() && answer->status == 413 && n > 1;
    if (too_large) peer.batch_limit = n / 2;
    switch (too_large ? Outcome::kSmaller : OutcomeOf(answer)) {
      case Outcome::kSmaller:
        break;
      case Outcome::kTaken:
        state->stats.sent += n;
        State::EraseFront(peer, n);
        break;
      case Outcome::kRefused:
        state->stats.dropped += n;
        State::EraseFront(peer, n);
        break;
      case Outcome::kAgain:
        ++state->stats.failures;
        peer.retry_at = state->clock.Now() + state->options.retry_after;
        break;
    }
    state->NextBatch(name, peer, next);
  }
  SendBatches(state, std::move(next));
}

void SendBatches(const std::shared_ptr<State>& state, std::vector<Batch> batches) {
  for (Batch& b : batches) {
    state->client->Send(
        std::move(b.request),
        [weak = std::weak_ptr<State>(state), name = b.name, generation = b.generation](
            absl::StatusOr<PeerResponse> answer) { Answered(weak, name, generation, answer); });
  }
}

}  // namespace

MeshDelivery::MeshDelivery(PeerClient* client, const Clock& clock, MeshDeliveryOptions options)
    : state_(std::make_shared<State>(client, clock, options)) {}

MeshDelivery::~MeshDelivery() { Stop(); }

void MeshDelivery::SetPeers(std::vector<DeliveryPeer> peers) {
  absl::MutexLock lock(&state_->mu);
  if (state_->stopped) return;
  std::map<std::string, State::Peer> next;
  for (DeliveryPeer& p : peers) {
    std::vector<std::string> filters;
    for (std::string& f : p.filters) {
      if (CheckFilter(f).ok()) filters.push_back(std::move(f));
    }
    if (filters.empty()) continue;
    auto it = state_->peers.find(p.name);
    State::Peer peer;
    if (it != state_->peers.end()) {
      peer = std::move(it->second);
      state_->peers.erase(it);
      if (peer.address != p.address) {
        // Restarted elsewhere: what is in flight answers to the old generation.
        peer.generation = ++state_->generations;
        peer.sending = false;
        peer.in_flight = 0;
        peer.retry_at = SteadyTime{};
      }
    } else {
      peer.generation = ++state_->generations;
    }
    peer.address = std::move(p.address);
    peer.filters = std::move(filters);
    next.emplace(std::move(p.name), std::move(peer));
  }
  for (const auto& [name, gone] : state_->peers) state_->stats.dropped += gone.queue.size();
  state_->peers = std::move(next);
}

void MeshDelivery::Send(const Insight& insight, const std::string& document) {
  std::vector<Batch> batches;
  std::shared_ptr<const std::string> shared;  // made once, for the first peer that wants it
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->stopped) return;
    for (auto& [name, peer] : state_->peers) {
      const bool wanted =
          std::any_of(peer.filters.begin(), peer.filters.end(),
                      [&](const std::string& f) { return Matches(f, insight.topic); });
      if (!wanted) continue;
      if (shared == nullptr) shared = std::make_shared<const std::string>(document);
      // The oldest not yet in flight make room (a batch in flight stays whole); if everything
      // waiting is in flight, the new one goes.
      bool room = true;
      while (peer.queue.size() >= state_->options.max_queue ||
             peer.queue_bytes + document.size() > state_->options.max_queue_bytes) {
        ++state_->stats.dropped;
        if (peer.in_flight >= peer.queue.size()) {
          room = false;
          break;
        }
        State::EraseAt(peer, peer.in_flight);
      }
      if (!room) continue;
      peer.queue.push_back(shared);
      peer.queue_bytes += document.size();
      state_->NextBatch(name, peer, batches);
    }
  }
  SendBatches(state_, std::move(batches));
}

void MeshDelivery::Retry() {
  std::vector<Batch> batches;
  {
    absl::MutexLock lock(&state_->mu);
    for (auto& [name, peer] : state_->peers) {
      state_->NextBatch(name, peer, batches);
    }
  }
  SendBatches(state_, std::move(batches));
}

std::vector<std::string> MeshDelivery::PeersFor(const std::string& topic) const {
  absl::MutexLock lock(&state_->mu);
  std::vector<std::string> out;
  for (const auto& [name, peer] : state_->peers) {
    for (const std::string& f : peer.filters) {
      if (Matches(f, topic)) {
        out.push_back(name);
        break;
      }
    }
  }
  return out;
}

MeshDelivery::Stats MeshDelivery::stats() const {
  absl::MutexLock lock(&state_->mu);
  Stats s = state_->stats;
  for (const auto& [name, peer] : state_->peers) s.queued += peer.queue.size();
  return s;
}

void MeshDelivery::Stop() {
  absl::MutexLock lock(&state_->mu);
  if (state_->stopped) return;
  state_->stopped = true;
  for (const auto& [name, peer] : state_->peers) state_->stats.dropped += peer.queue.size();
  state_->peers.clear();
}

}  // namespace hivemesh::bus
