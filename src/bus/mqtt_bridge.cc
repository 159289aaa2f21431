#include "bus/mqtt_bridge.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/strings.h"
#include "bus/drain_order.h"
#include "bus/topic.h"

namespace hivemesh::bus {

absl::StatusOr<MqttAddress> ParseMqttUrl(std::string_view url) {
  MqttAddress out;
  std::string_view rest;
  if (url.starts_with("mqtt://")) {
    rest = url.substr(7);
  } else if (url.starts_with("mqtts://")) {
    rest = url.substr(8);
    out.tls = true;
  } else {
    return absl::InvalidArgumentError(
        StrCat("mqtt_url '", url, "' is not mqtt://host[:port] or mqtts://host[:port]"));
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  out.port = out.tls ? 8883 : 1883;
  const size_t colon = rest.rfind(':');
  const bool bracketed = rest.starts_with('[');
  if (colon != std::string_view::npos && (!bracketed || colon > rest.find(']'))) {
    const std::string_view port = rest.substr(colon + 1);
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) {
        return absl::InvalidArgumentError(StrCat("mqtt_url '", url, "': bad port"));
      }
      p = p * 10 + (c - '0');
    }
    if (port.empty() || p == 0 || p > 65535) {
      return absl::InvalidArgumentError(StrCat("mqtt_url '", url, "': bad port"));
    }
    out.port = p;
    rest = rest.substr(0, colon);
  }
  if (bracketed && rest.size() > 2 && rest.back() == ']') rest = rest.substr(1, rest.size() - 2);
  if (rest.empty() || rest.find_first_of("/@?# ") != std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat("mqtt_url '", url, "': bad host"));
  }
  out.host = std::string(rest);
  return out;
}

struct MqttBridge::State {
  State(MqttOptions o, MqttAddress a, std::unique_ptr<Outbox> b)
      : options(std::move(o)), address(std::move(a)), outbox(std::move(b)) {}

  // The bridge's thread: sends rows while connected and fewer than max_in_flight wait.
  void Run();
  void OnConnect(int rc);
  void OnDisconnect(int rc);
  void OnPublish(int mid, int reason);
  // Starts the first connection and the client's thread, at most once per backoff; whether it
  // began.
  bool Dial() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  const MqttOptions options;
  const MqttAddress address;
  const std::unique_ptr<Outbox> outbox;
  mosquitto* client = nullptr;
  std::thread thread;

  absl::Mutex mu;
  absl::CondVar wake;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool connected ABSL_GUARDED_BY(mu) = false;
  bool looping ABSL_GUARDED_BY(mu) = false;  // the client's thread runs (after a first dial)
  std::chrono::steady_clock::time_point next_dial ABSL_GUARDED_BY(mu){};
  std::chrono::milliseconds dial_backoff ABSL_GUARDED_BY(mu){0};
  // A connection that fails before it is made (refused, TLS, authentication) is logged with
  // libmosquitto's last error (its log callback): a new reason at once, the same at most once a
  // minute.
  void ConnectFailed(std::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void OnLog(int level, const char* text);
  std::string last_error ABSL_GUARDED_BY(mu);
  std::chrono::steady_clock::time_point failure_logged ABSL_GUARDED_BY(mu){};
  bool ever_failure_logged ABSL_GUARDED_BY(mu) = false;
  std::string failure_told ABSL_GUARDED_BY(mu);  // the last reason logged
  // Which row goes next (live before backlog), made again at each connect (`reset`).
  DrainOrder order ABSL_GUARDED_BY(mu);
  bool reset ABSL_GUARDED_BY(mu) = false;
  Pace pace ABSL_GUARDED_BY(mu){options.backlog_rate};
  struct Flight {
    uint64_t seq = 0;
    bool backlog = false;
  };
  std::map<int, Flight> in_flight ABSL_GUARDED_BY(mu);  // message id -> row
  size_t backlog_in_flight ABSL_GUARDED_BY(mu) = 0;
  // Publishes `row` (mu held; released around the call). False if the connection went.
  bool Send(const Outbox::Row& row, bool backlog) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Counts an acknowledgement of `seq` and deletes its row.
  void Acknowledged(uint64_t seq, int reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // PUBACKs that came before publish() returned their message id to the thread, and their
  // reason codes.
  std::map<int, int> early ABSL_GUARDED_BY(mu);
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;  // connections so far (acks of older ones: none)
  uint64_t accepted ABSL_GUARDED_BY(mu) = 0;
  uint64_t published ABSL_GUARDED_BY(mu) = 0;
  uint64_t refused ABSL_GUARDED_BY(mu) = 0;
  std::chrono::steady_clock::time_point last_full_log ABSL_GUARDED_BY(mu){};
};

namespace {

MqttBridge::State* StateOf(void* p) { return static_cast<MqttBridge::State*>(p); }

void OnConnectCallback(mosquitto*, void* self, int rc, int, const mosquitto_property*) {
  StateOf(self)->OnConnect(rc);
}
void OnDisconnectCallback(mosquitto*, void* self, int rc, const mosquitto_property*) {
  StateOf(self)->OnDisconnect(rc);
}
void OnPublishCallback(mosquitto*, void* self, int mid, int reason, const mosquitto_property*) {
  StateOf(self)->OnPublish(mid, reason);
}
void OnLogCallback(mosquitto*, void* self, int level, const char* text) {
  StateOf(self)->OnLog(level, text);
}

}  // namespace

void MqttBridge::State::OnLog(int level, const char* text) {
  if ((level & MOSQ_LOG_ERR) == 0 || text == nullptr) return;
  absl::MutexLock lock(&mu);
  last_error.assign(text, strnlen(text, 512));
}

void MqttBridge::State::ConnectFailed(std::string_view why) {
  const auto now = std::chrono::steady_clock::now();
  if (ever_failure_logged && why == failure_told &&
      now - failure_logged < std::chrono::minutes(1)) {
    return;
  }
  ever_failure_logged = true;
  failure_logged = now;
  failure_told = std::string(why);
  spdlog::warn(
      "MQTT broker {}:{}: {}; insights wait in the outbox, and the node tries again (the same "
      "reason is told once a minute)",
      address.host, address.port, why);
}

void MqttBridge::State::OnConnect(int rc) {
  absl::MutexLock lock(&mu);
  if (rc != 0) {
    ConnectFailed(StrCat("refused the connection: ", mosquitto_reason_string(rc)));
    return;
  }
  spdlog::info("MQTT broker {}:{} connected; {} insight(s) waiting", address.host, address.port,
               outbox->rows());
  connected = true;
  ++generation;
  in_flight.clear();
  backlog_in_flight = 0;
  early.clear();
  reset = true;  // what waits is the backlog, from the oldest row not acknowledged
  wake.SignalAll();
}

void MqttBridge::State::OnDisconnect(int rc) {
  absl::MutexLock lock(&mu);
  if (connected && !stopping) {
    spdlog::warn("MQTT broker {}:{} disconnected ({}); insights wait in the outbox", address.host,
                 address.port, rc == 0 ? "by request" : mosquitto_strerror(rc));
  } else if (!connected && !stopping && rc != 0) {
    // Before the connection was made: a TLS handshake or the network failed.
    ConnectFailed(StrCat("the connection failed (", mosquitto_strerror(rc),
                         last_error.empty() ? "" : StrCat(": ", last_error), ")"));
  }
  connected = false;
  in_flight.clear();
  backlog_in_flight = 0;
  early.clear();
}

void MqttBridge::State::OnPublish(int mid, int reason) {
  absl::MutexLock lock(&mu);
  auto it = in_flight.find(mid);
  if (it == in_flight.end()) {
    early[mid] = reason;  // the thread records the row after publish() returns
    return;
  }
  const Flight flight = it->second;
  in_flight.erase(it);
  if (flight.backlog) --backlog_in_flight;
  Acknowledged(flight.seq, reason);
  wake.SignalAll();
}

void MqttBridge::State::Acknowledged(uint64_t seq, int reason) {
  if (reason >= 0x80) {
    ++refused;
    spdlog::warn("MQTT broker refused an insight (reason {}); dropped", reason);
  } else {
    ++published;
  }
  if (absl::Status s = outbox->Remove(seq); !s.ok()) {
    spdlog::error("insight outbox: {}", MessageOf(s));
  }
}

bool MqttBridge::State::Send(const Outbox::Row& row, bool backlog) {
  const uint64_t gen = generation;
  mosquitto_property* props = nullptr;
  mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "hivemesh-id",
                                     row.id.c_str());
  int mid = 0;
  mu.Unlock();  // the network thread's callbacks take `mu`
  const int rc =
      mosquitto_publish_v5(client, &mid, row.topic.c_str(), static_cast<int>(row.document.size()),
                           row.document.data(), 1, false, props);
  mosquitto_property_free_all(&props);
  mu.Lock();
  if (rc != MOSQ_ERR_SUCCESS || generation != gen || !connected) return false;
  if (auto e = early.find(mid); e != early.end()) {
    const int reason = e->second;
    early.erase(e);
    Acknowledged(row.seq, reason);
    return true;
  }
  in_flight[mid] = Flight{row.seq, backlog};
  if (backlog) ++backlog_in_flight;
  return true;
}

bool MqttBridge::State::Dial() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_dial) return false;
  mu.Unlock();
  int rc = mosquitto_connect_async(client, address.host.c_str(), address.port, options.keepalive_s);
  // Once a first connection has begun, the client's own thread keeps it and makes it again
  // after a disconnect (its backoff); before that, a refused connect is tried again here.
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_loop_start(client);
  mu.Lock();
  if (rc == MOSQ_ERR_SUCCESS) return true;
  dial_backoff = std::min(std::max(dial_backoff * 2, std::chrono::milliseconds(1000)),
                          std::chrono::milliseconds(10000));
  next_dial = now + dial_backoff;
  ConnectFailed(StrCat("cannot be reached (", mosquitto_strerror(rc),
                       last_error.empty() ? "" : StrCat(": ", last_error), ")"));
  return false;
}

void MqttBridge::State::Run() {
  absl::MutexLock lock(&mu);
  while (!stopping) {
    if (!looping) {
      looping = Dial();
      if (!looping) {
        wake.WaitWithTimeout(&mu, absl::Milliseconds(250));
        continue;
      }
    }
    if (!connected || static_cast<int>(in_flight.size()) >= options.max_in_flight) {
      wake.WaitWithTimeout(&mu, absl::Milliseconds(200));
      continue;
    }
    if (reset) {
      absl::StatusOr<Outbox::Waiting> waiting = outbox->Snapshot(kMaxBacklogTopics);
      if (!waiting.ok()) {
        spdlog::error("insight outbox: {}", MessageOf(waiting.status()));
        wake.WaitWithTimeout(&mu, absl::Seconds(1));
        continue;
      }
      order.Reset(waiting->last, std::move(waiting->topics));
      reset = false;
    }
    const uint64_t gen = generation;
    bool sent_any = false, failed = false;
    // Live rows first: those of topics with nothing held go now.
    size_t room = static_cast<size_t>(options.max_in_flight) - in_flight.size();
    if (!order.all_held() && room > 0) {
      absl::StatusOr<std::vector<Outbox::Row>> rows = outbox->After(order.live_after(), room);
      if (!rows.ok()) {
        spdlog::error("insight outbox: {}", MessageOf(rows.status()));
        wake.WaitWithTimeout(&mu, absl::Seconds(1));
        continue;
      }
      for (const Outbox::Row& row : *rows) {
        if (!order.Live(row.seq, row.topic)) continue;  // its topic's backlog goes first
        if (!Send(row, false)) {
          failed = true;
          break;
        }
        sent_any = true;
      }
    }
    // Then the backlog, at its pace, with at most half the window (live rows keep the rest).
    const size_t backlog_window = std::max<size_t>(1, options.max_in_flight / 2);
    const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
    int64_t pace_wait_ns = 0;
    if (!failed && generation == gen && !order.backlog_done()) {
      room = static_cast<size_t>(options.max_in_flight) - in_flight.size();
      const size_t want =
          std::min(room, backlog_window - std::min(backlog_window, backlog_in_flight));
      const size_t may = want > 0 ? pace.Take(want, now_ns) : 0;
      if (want > 0 && may == 0) pace_wait_ns = pace.Wait(now_ns);
      size_t went = 0;
      // Rows the live cursor sent are skipped: read past them in batches.
      while (went < may) {
        const size_t batch = std::max<size_t>(may - went, 64);
        absl::StatusOr<std::vector<Outbox::Row>> rows = outbox->After(order.backlog_after(), batch);
        if (!rows.ok()) {
          spdlog::error("insight outbox: {}", MessageOf(rows.status()));
          failed = true;
          break;
        }
        bool stop = false;
        for (const Outbox::Row& row : *rows) {
          const DrainOrder::Backlog next = order.Next(row.seq, row.topic);
          if (next == DrainOrder::Backlog::kStop) {
            stop = true;
            break;
          }
          if (next == DrainOrder::Backlog::kSkip) continue;
          if (!Send(row, true)) {
            failed = true;
            break;
          }
          sent_any = true;
          if (++went == may) break;
        }
        if (failed || stop || went == may) break;
        if (rows->size() < batch) {
          order.CaughtUp();  // nothing more in the outbox after it
          break;
        }
      }
    }
    if (sent_any && !failed) continue;
    // Nothing to send now: Accept and acknowledgements wake the thread; the backlog's pace may.
    absl::Duration wait = absl::Seconds(1);
    if (failed) wait = absl::Milliseconds(200);
    if (pace_wait_ns > 0) wait = std::min(wait, absl::Nanoseconds(pace_wait_ns));
    wake.WaitWithTimeout(&mu, wait);
  }
}

absl::StatusOr<std::unique_ptr<MqttBridge>> MqttBridge::Start(MqttOptions options,
                                                              std::unique_ptr<Outbox> outbox) {
  absl::StatusOr<MqttAddress> address = ParseMqttUrl(options.url);
  if (!address.ok()) return address.status();
  for (const std::string& f : options.filters) {
    if (absl::Status s = CheckFilter(f); !s.ok()) {
      return absl::InvalidArgumentError(StrCat("mqtt_topics: '", f, "': ", MessageOf(s)));
    }
  }
  static std::once_flag init;
  std::call_once(init, [] { mosquitto_lib_init(); });
  auto state = std::make_shared<State>(std::move(options), *std::move(address), std::move(outbox));
  state->client = mosquitto_new(state->options.client_id.c_str(), true, state.get());
  if (state->client == nullptr) return absl::InternalError("mosquitto_new failed");
  mosquitto_int_option(state->client, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_reconnect_delay_set(state->client, 1, 10, true);
  mosquitto_max_inflight_messages_set(state->client,
                                      static_cast<unsigned>(state->options.max_in_flight));
  if (!state->options.username.empty()) {
    mosquitto_username_pw_set(state->client, state->options.username.c_str(),
                              state->options.password.c_str());
  }
  if (state->address.tls) {
    const int rc = mosquitto_tls_set(
        state->client, state->options.ca_file.empty() ? nullptr : state->options.ca_file.c_str(),
        state->options.ca_file.empty() ? "/etc/ssl/certs" : nullptr, nullptr, nullptr, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_destroy(state->client);
      return absl::InvalidArgumentError(
          StrCat("mqtt_ca '", state->options.ca_file, "': ", mosquitto_strerror(rc)));
    }
  }
  mosquitto_connect_v5_callback_set(state->client, OnConnectCallback);
  mosquitto_disconnect_v5_callback_set(state->client, OnDisconnectCallback);
  mosquitto_publish_v5_callback_set(state->client, OnPublishCallback);
  mosquitto_log_callback_set(state->client, OnLogCallback);
  // The first connection is made by the bridge's thread (Dial), in the background: a broker
  // that is down now is no error.
  state->thread = std::thread([s = state.get()] { s->Run(); });
  return std::unique_ptr<MqttBridge>(new MqttBridge(std::move(state)));
}

MqttBridge::~MqttBridge() { Stop(); }

bool MqttBridge::Wants(std::string_view topic) const {
  if (state_->options.filters.empty()) return true;
  for (const std::string& f : state_->options.filters) {
    if (Matches(f, topic)) return true;
  }
  return false;
}

absl::Status MqttBridge::Accept(std::string_view topic, std::string_view id,
                                std::string_view document) {
  const uint64_t dropped_before = state_->outbox->dropped();
  absl::StatusOr<uint64_t> seq = state_->outbox->Append(topic, id, document);
  absl::MutexLock lock(&state_->mu);
  if (!seq.ok()) return seq.status();
  ++state_->accepted;
  const auto now = std::chrono::steady_clock::now();
  if (state_->outbox->dropped() > dropped_before &&
      now - state_->last_full_log >= std::chrono::minutes(1)) {
    state_->last_full_log = now;
    spdlog::warn(
        "insight outbox full: the oldest insights are dropped to make room ({} so far; "
        "hivemesh_insights_dropped_total{{reason=\"outbox\"}})",
        state_->outbox->dropped());
  }
  state_->wake.SignalAll();
  return absl::OkStatus();
}

MqttBridge::Stats MqttBridge::stats() const {
  absl::MutexLock lock(&state_->mu);
  Stats s;
  s.accepted = state_->accepted;
  s.published = state_->published;
  s.refused = state_->refused;
  s.waiting = state_->outbox->rows();
  s.waiting_bytes = state_->outbox->bytes();
  s.dropped = state_->outbox->dropped();
  s.connected = state_->connected;
  return s;
}

void MqttBridge::Stop() {
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->stopping) return;
    state_->stopping = true;
    state_->wake.SignalAll();
  }
  if (state_->thread.joinable()) state_->thread.join();
  mosquitto_disconnect(state_->client);
  mosquitto_loop_stop(state_->client, false);
  mosquitto_destroy(state_->client);
  state_->client = nullptr;
}

}  // namespace hivemesh::bus
