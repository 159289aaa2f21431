// The forwarder against a scripted mesh: which peer gets a request, retries on another one,
// ejection and its reset on restart, data policies learnt from peers, the load responses carry,
// and the answer when nothing can be tried. The forwarder runs on a ManualClock: a retry's
// backoff passes when the test advances the clock.
#include "routing/forwarder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "base/strings.h"
#include "codec/infer_codec.h"
#include "codec/mesh_tensors.h"

namespace hivemesh::routing {
namespace {

using ::testing::HasSubstr;

class FakeDirectory final : public MeshDirectory {
 public:
  std::vector<PeerEndpoint> PeersFor(const std::string& model) const override {
    absl::MutexLock lock(&mu);
    auto it = peers.find(model);
    return it == peers.end() ? std::vector<PeerEndpoint>{} : it->second;
  }
  std::optional<std::string> MemberKey(std::string_view) const override { return "key"; }
  // For a change while the forwarder may be reading (a try under way).
  void Set(const std::string& model, std::vector<PeerEndpoint> endpoints) {
    absl::MutexLock lock(&mu);
    peers[model] = std::move(endpoints);
  }
  bool Settling(const std::string&) const override { return settling.load(); }
  mutable absl::Mutex mu;
  // Written by the test between requests, read under mu by the forwarder.
  std::map<std::string, std::vector<PeerEndpoint>> peers;
  std::atomic<bool> settling{false};
};

// Answers each request at once, as scripted per address: a transport error, or an HTTP status
// (200 with the request's input as output "y", in the form a node answers a peer in: the mesh
// tensor form to a request in that form, KServe JSON to a raw body).
class ScriptedClient final : public PeerClient {
 public:
  void Send(PeerRequest request, PeerCallback done) override {
    std::string address = request.address;
    absl::StatusOr<PeerResponse> result;
    {
      absl::MutexLock lock(&mu);
      sent.push_back(address);
      requests.push_back(request);
      auto it = behaviour.find(address);
      std::string what = it == behaviour.end() ? "200" : it->second;
      // "403*N": refused the first N times (the peer has not heard of the sender yet), then 200.
      if (what.starts_with("403*")) {
        what = ++count[address] <= std::stoi(what.substr(4)) ? "403" : "200";
      }
      if (what == "hang") {
        // Accepted and never answered (a stopped process): the test releases it with Release().
        held.emplace_back(address, std::move(done));
        return;
      }
      if (what == "refused") {
        result = absl::UnavailableError("connection refused");
      } else if (what == "reset") {
        result = absl::UnavailableError("connection reset by peer");
      } else {
        PeerResponse r;
        r.status = std::stoi(what);
        InferResponse out;
        out.model_name = "m";
        out.served_by = address;
        out.outputs.push_back(Tensor::Owned("y", DataType::kFp32, {1}, std::string(4, '\0')));
        out.binary = {false};
        std::string body = R"({"error":"busy"})";
        if (r.status == 200 && IsMeshForm(request)) {
          std::string wire = request.body;
          for (const Tensor& t : request.tail) wire.append(t.data());
          absl::StatusOr<InferRequest> in =
              DecodeMeshRequest(std::make_shared<const std::string>(std::move(wire)));
          EXPECT_TRUE(in.ok()) << in.status();
          if (in.ok()) out.outputs[0] = in->inputs.at(0);
          out.outputs[0].set_name("y");
          MeshTensorsMessage m = EncodeMeshAnswer(out);
          body = m.head;
          for (const Tensor& t : m.tensors) body.append(t.data());
          r.headers.Add("Content-Type", kMeshTensorsType);
        } else if (r.status == 200) {
          body = EncodeInferResponse(out).json;
          r.headers.Add("Hivemesh-Served-By", address);
        }
        r.body = std::make_shared<const std::string>(std::move(body));
        if (load.count(address)) r.headers.Add("Hivemesh-Load", load[address]);
        result = std::move(r);
      }
    }
    done(std::move(result));
  }
  int open_connections() const override { return 0; }
  int open_links() const override { return 0; }
  void CloseConnectionsTo(const std::string&) override {}
  void Stop() override {}
  static bool IsMeshForm(const PeerRequest& request) {
    for (const auto& [name, value] : request.headers) {
      if (name == "Content-Type") return value == kMeshTensorsType;
    }
    return false;
  }
  // Answers every held request with `status` ("200", "503", ...); returns how many.
  int Release(const std::string& status = "200") {
    std::vector<std::pair<std::string, PeerCallback>> now;
    {
      absl::MutexLock lock(&mu);
      now.swap(held);
    }
    for (auto& [address, done] : now) {
      PeerResponse r;
      r.status = std::stoi(status);
      r.body = std::make_shared<const std::string>(R"({"error":"late"})");
      if (r.status == 200) {
        InferResponse out;
        out.model_name = "m";
        out.served_by = address;
        out.outputs.push_back(Tensor::Owned("y", DataType::kFp32, {1}, std::string(4, '\0')));
        MeshTensorsMessage m = EncodeMeshAnswer(out);
        std::string body = m.head;
        for (const Tensor& t : m.tensors) body.append(t.data());
        r.body = std::make_shared<const std::string>(std::move(body));
        r.headers.Add("Content-Type", kMeshTensorsType);
      }
      done(std::move(r));
    }
    return static_cast<int>(now.size());
  }
  int SentTo(const std::string& address) {
    absl::MutexLock lock(&mu);
    return static_cast<int>(std::count(sent.begin(), sent.end(), address));
  }

  // Filled by Send (under mu); the rest is set by the test between requests. The test reads
  // `sent` and `requests` once its request has been answered.
  absl::Mutex mu;
  std::map<std::string, std::string> behaviour;  // address -> "refused" | "reset" | "503" | ...
  std::map<std::string, int> count;              // address -> requests it got (for "403*N")
  std::map<std::string, std::string> load;       // address -> Hivemesh-Load value
  std::vector<std::string> sent;
  std::vector<PeerRequest> requests;
  std::vector<std::pair<std::string, PeerCallback>> held;  // "hang": address, callback
};

PeerEndpoint Peer(const std::string& name, const std::string& zone = "z1",
                  DataPolicy policy = DataPolicy::kMesh) {
  PeerEndpoint p;
  p.node = name;
  p.api_address = name + ":8000";
  p.zone = zone;
  p.policy = policy;
  p.service_ns = 1e6;
  return p;
}

InferRequest Request() {
  InferRequest r;
  r.model_name = "m";
  r.inputs.push_back(Tensor::Owned("x", DataType::kFp32, {1}, std::string(4, '\1')));
  return r;
}

// Routes `req` through `forwarder`; returns its result, or CANCELLED if it was to be served
// locally. `routed`, if given, gets how it was routed. While the answer is awaited, `clock` is
// advanced by `step` every millisecond of real time, so that retries after a backoff run (step
// zero: the clock stands still, and an answer that needs time to pass never comes).
absl::StatusOr<InferResponse> RouteAndWait(Forwarder& forwarder, ManualClock& clock,
                                           InferRequest req, const RouteOptions& options = {},
                                           Forwarder::Routed* routed = nullptr,
                                           Nanos step = std::chrono::milliseconds(1)) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<InferResponse>>>();
  std::future<absl::StatusOr<InferResponse>> answer = promise->get_future();
  ForwardCallback done = [promise](absl::StatusOr<InferResponse> r) { promise->set_value(r); };
  const Forwarder::Routed how = forwarder.Route(req, "trace-1", options, done);
  if (routed) *routed = how;
  if (how == Forwarder::Routed::kLocal) return absl::CancelledError("local");
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (answer.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
    if (std::chrono::steady_clock::now() > limit) return absl::InternalError("no answer in 60 s");
    clock.Advance(step);
  }
  return answer.get();
}

class ForwarderTest : public ::testing::Test {
 protected:
  ForwarderTest() : forwarder_(&directory_, &client_, "self", 42, {}, clock_) {}

  // Routes one request (by default Request()) through forwarder_, as RouteAndWait does.
  absl::StatusOr<InferResponse> Run(const RouteOptions& options = {},
                                    Forwarder::Routed* routed = nullptr,
                                    InferRequest req = Request()) {
    return RouteAndWait(forwarder_, clock_, std::move(req), options, routed);
  }

  ManualClock clock_{SteadyTime(std::chrono::hours(1))};
  FakeDirectory directory_;
  ScriptedClient client_;
  Forwarder forwarder_;
};

// Routes one request and counts its answers; the answer is kept.
struct Counted {
  absl::Mutex mu;
  int calls = 0;
  std::optional<absl::StatusOr<InferResponse>> answer;
  ForwardCallback Callback() {
    return [this](absl::StatusOr<InferResponse> r) {
      absl::MutexLock lock(&mu);
      ++calls;
      answer = std::move(r);
    };
  }
  int Calls() {
    absl::MutexLock lock(&mu);
    return calls;
  }
};

// Advances `clock` by 1 ms per ms of real time until `done()` or `limit` of clock time passed.
bool AdvanceUntil(ManualClock& clock, Nanos limit, const std::function<bool()>& done) {
  for (Nanos passed(0); passed < limit; passed += std::chrono::milliseconds(1)) {
    if (done()) return true;
    clock.Advance(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

PeerStats StatsOf(const Forwarder& forwarder, const std::string& node) {
  for (const PeerStats& p : forwarder.Stats().peers) {
    if (p.node == node) return p;
  }
  return PeerStats{};
}

TEST_F(ForwarderTest, UnknownModelIsNotFoundAndNothingIsSent) {
  absl::StatusOr<InferResponse> r = Run();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not served by this node or any node"));
  EXPECT_TRUE(client_.sent.empty());
}

// Right after a start or a rejoin, or while a member is suspect, "no host" may be a view that
// has not caught up: the request waits (within its deadline, at most hold_max) for a host to
// appear, and is answered UNAVAILABLE (503, retry), not NOT_FOUND, if none does.
TEST_F(ForwarderTest, NoHostWhileTheViewSettlesIsHeldUntilOneAppears) {
  directory_.settling = true;
  Counted counted;
  ForwardCallback done = counted.Callback();
  InferRequest req = Request();
  ASSERT_EQ(forwarder_.Route(req, "", {}, done), Forwarder::Routed::kForwarded);
  // Time passes (300 ms of the clock), and nothing is answered yet.
  EXPECT_FALSE(
      AdvanceUntil(clock_, std::chrono::milliseconds(300), [&] { return counted.Calls() > 0; }));
  EXPECT_TRUE(client_.sent.empty());
  directory_.Set("m", {Peer("b")});
  ASSERT_TRUE(
      AdvanceUntil(clock_, std::chrono::milliseconds(500), [&] { return counted.Calls() > 0; }));
  absl::MutexLock lock(&counted.mu);
  ASSERT_TRUE(counted.answer->ok()) << counted.answer->status();
  EXPECT_EQ((*counted.answer)->served_by, "b:8000");
  EXPECT_EQ(counted.calls, 1);
  EXPECT_EQ(forwarder_.Stats().held, 1u);
  EXPECT_EQ(forwarder_.Stats().held_found, 1u);
}

TEST_F(ForwarderTest, NoHostAppearingWhileTheViewSettlesIsUnavailableNotNotFound) {
  directory_.settling = true;
  const SteadyTime start = clock_.Now();
  absl::StatusOr<InferResponse> r = Run();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("settling"));
  EXPECT_GE(clock_.Now() - start, ForwarderOptions{}.hold_max - std::chrono::milliseconds(50));
  EXPECT_TRUE(client_.sent.empty());
  // A deadline shorter than hold_max ends the hold at the deadline.
  InferRequest req = Request();
  req.deadline = clock_.Now() + std::chrono::milliseconds(200);
  const SteadyTime second = clock_.Now();
  r = Run({}, nullptr, std::move(req));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_LT(clock_.Now() - second, std::chrono::milliseconds(600));
  // Settled: not found at once.
  directory_.settling = false;
  EXPECT_EQ(Run().status().code(), absl::StatusCode::kNotFound);
}

// A suspect host (not confirmed dead) is tried only when no other can take the request.
TEST_F(ForwarderTest, SuspectHostsAreCandidatesOfLastResort) {
  PeerEndpoint suspect = Peer("s");
  suspect.suspect = true;
  suspect.service_ns = 1;  // the fastest, were it not suspect
  directory_.peers["m"] = {suspect, Peer("b")};
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<InferResponse> r = Run();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->served_by, "b:8000");
  }
  directory_.peers["m"] = {suspect};
  absl::StatusOr<InferResponse> r = Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->served_by, "s:8000");
}

// A node that hosts the model sent the request on (busier here than its peer); the peer is gone
// (refused) or full (503), and no other can take it: the request comes back to be served here,
// rather than failing with the peer's error while this node could serve it.
TEST_F(ForwarderTest, ARequestNoPeerCouldTakeComesBackToTheNodeThatHostsIt) {
  for (const char* behaviour : {"refused", "503"}) {
    SCOPED_TRACE(behaviour);
    directory_.peers["m"] = {Peer("b")};
    client_.behaviour["b:8000"] = behaviour;
    std::promise<InferRequest> back;
    RouteOptions options;
    options.serve_here = [&](InferRequest&& r) { back.set_value(std::move(r)); };
    Counted counted;
    ForwardCallback done = counted.Callback();
    InferRequest req = Request();
    ASSERT_EQ(forwarder_.Route(req, "t", options, done), Forwarder::Routed::kForwarded);
    std::future<InferRequest> came = back.get_future();
    ASSERT_TRUE(AdvanceUntil(clock_, std::chrono::seconds(2), [&] {
      return came.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    })) << "the request did not come back";
    EXPECT_EQ(came.get().model_name, "m");
    EXPECT_EQ(counted.Calls(), 0) << "the forwarder answered it too";
  }
}

TEST_F(ForwarderTest, ANamedVersionGoesOnlyWhereItIsServed) {
  PeerEndpoint b = Peer("b"), c = Peer("c");
  b.versions = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"1"});
  c.versions = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"1", "2"});
  directory_.peers["m"] = {b, c};
  for (int i = 0; i < 20; ++i) {
    std::promise<absl::StatusOr<InferResponse>> promise;
    ForwardCallback done = [&](absl::StatusOr<InferResponse> r) { promise.set_value(r); };
    InferRequest req = Request();
    req.model_version = "2";
    ASSERT_EQ(forwarder_.Route(req, "", {}, done), Forwarder::Routed::kForwarded);
    ASSERT_TRUE(promise.get_future().get().ok());
  }
  EXPECT_EQ(client_.SentTo("c:8000"), 20);
  EXPECT_EQ(client_.SentTo("b:8000"), 0);
  // A version no peer serves: 404 naming the version, nothing sent.
  std::promise<absl::StatusOr<InferResponse>> promise;
  ForwardCallback done = [&](absl::StatusOr<InferResponse> r) { promise.set_value(r); };
  InferRequest req = Request();
  req.model_version = "3";
  forwarder_.Route(req, "", {}, done);
  absl::StatusOr<InferResponse> r = promise.get_future().get();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("version '3' of model 'm'"));
  EXPECT_EQ(client_.sent.size(), 20u);
}

TEST_F(ForwarderTest, ForwardedRequestCarriesHopsOriginTraceAndDeadline) {
  directory_.peers["m"] = {Peer("b")};
  RouteOptions options;
  options.hops = 0;
  std::promise<absl::StatusOr<InferResponse>> promise;
  ForwardCallback done = [&](absl::StatusOr<InferResponse> r) { promise.set_value(r); };
  InferRequest req = Request();
  req.deadline = clock_.Now() + std::chrono::milliseconds(800);
  ASSERT_EQ(forwarder_.Route(req, "trace-7", options, done), Forwarder::Routed::kForwarded);
  absl::StatusOr<InferResponse> r = promise.get_future().get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->served_by, "b:8000");
  ASSERT_EQ(client_.requests.size(), 1u);
  std::map<std::string, std::string> h(client_.requests[0].headers.begin(),
                                       client_.requests[0].headers.end());
  EXPECT_EQ(h[kHopsHeader], "1");
  EXPECT_EQ(h[kOriginHeader], "self");
  EXPECT_EQ(h[kTraceHeader], "trace-7");
  // The deadline goes as the call's timeout; the client writes what is left of it.
  EXPECT_TRUE(client_.requests[0].send_time_left);
  EXPECT_EQ(h.count("Inference-Timeout-Ms"), 0u);
  EXPECT_EQ(client_.requests[0].timeout.count(), 800) << "no time passed on the clock";
  EXPECT_EQ(h["Content-Type"], kMeshTensorsType) << "the mesh tensor form, not JSON";
  EXPECT_EQ(h.count("Inference-Header-Content-Length"), 0u);
  // The input's bytes follow the head as they are; the peer's answer comes back decoded.
  ASSERT_EQ(client_.requests[0].tail.size(), 1u);
  EXPECT_EQ(client_.requests[0].tail[0].data(), std::string(4, '\1'));
  ASSERT_EQ(r->outputs.size(), 1u);
  EXPECT_EQ(r->outputs[0].name(), "y");
  EXPECT_EQ(r->outputs[0].data(), std::string(4, '\1'));
  // Without a trace id of its own, the request gets one naming this node.
  std::promise<absl::StatusOr<InferResponse>> second;
  ForwardCallback done2 = [&](absl::StatusOr<InferResponse> r) { second.set_value(r); };
  InferRequest req2 = Request();
  forwarder_.Route(req2, "", options, done2);
  ASSERT_TRUE(second.get_future().get().ok());
  std::map<std::string, std::string> h2(client_.requests[1].headers.begin(),
                                        client_.requests[1].headers.end());
  EXPECT_EQ(h2[kTraceHeader], "self-1");
}

TEST_F(ForwarderTest, APeersErrorIsPassedOnAsItsMessage) {
  directory_.peers["m"] = {Peer("b")};
  client_.behaviour["b:8000"] = "404";
  absl::StatusOr<InferResponse> r = Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  // The peer's JSON error body is read: its message, not the JSON text, is in the answer.
  EXPECT_EQ(MessageOf(r.status()), "node b: busy");
}

TEST_F(ForwarderTest, ARequestWithMoreInputsThanTheMeshFormCountsIsRefusedAndNothingIsSent) {
  directory_.peers["m"] = {Peer("b")};
  InferRequest req = Request();
  req.inputs.assign(kMeshMaxTensors + 1, req.inputs[0]);
  Forwarder::Routed routed;
  absl::StatusOr<InferResponse> r = Run({}, &routed, req);
  EXPECT_EQ(routed, Forwarder::Routed::kForwarded);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("at most 65535 inputs"));
  EXPECT_TRUE(client_.sent.empty());
  // Sent as it came (a raw body), the count is no limit.
  RouteOptions raw;
  raw.raw_body = true;
  EXPECT_TRUE(Run(raw, nullptr, req).ok());
  EXPECT_EQ(client_.SentTo("b:8000"), 1);
}

TEST_F(ForwarderTest, RefusedPeerIsRetriedElsewhereAndEjectedAtOnce) {
  directory_.peers["m"] = {Peer("b"), Peer("c")};
  client_.behaviour["b:8000"] = "refused";
  // Until b has been tried once (P2C may prefer c at first).
  for (int i = 0; i < 200 && client_.SentTo("b:8000") == 0; ++i) {
    absl::StatusOr<InferResponse> r = Run();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->served_by, "c:8000");
  }
  ASSERT_EQ(client_.SentTo("b:8000"), 1);
  EXPECT_EQ(forwarder_.Stats().retries, 1u) << "the refused request went on to c";
  // b is ejected: nothing more goes there.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Run().ok());
  EXPECT_EQ(client_.SentTo("b:8000"), 1) << "nothing more after the first failure";
  bool ejected = false;
  for (const PeerStats& p : forwarder_.Stats().peers) ejected |= p.node == "b" && p.ejected;
  EXPECT_TRUE(ejected);
  // b restarts: a new incarnation starts it afresh. With c now gone, b serves.
  client_.behaviour.erase("b:8000");
  client_.behaviour["c:8000"] = "refused";
  directory_.peers["m"][0].generation = 2;
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<InferResponse> r = Run();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->served_by, "b:8000");
  }
}

// A peer restarting after kill -9 refuses connections until it listens again. Its ejection
// for a refusal lasts a second, so once it listens it is probed and back in use within about a
// second, even before the mesh tells of its new incarnation (before: 30 s, growing).
TEST_F(ForwarderTest, ARefusingPeerIsProbedAgainWithinASecond) {
  directory_.peers["m"] = {Peer("b"), Peer("c")};
  client_.behaviour["b:8000"] = "refused";
  for (int i = 0; i < 200 && client_.SentTo("b:8000") == 0; ++i) ASSERT_TRUE(Run().ok());
  ASSERT_TRUE(StatsOf(forwarder_, "b").ejected);
  client_.behaviour.erase("b:8000");  // b listens again, same generation as far as we know
  clock_.Advance(std::chrono::milliseconds(1001));
  absl::StatusOr<InferResponse> r = Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->served_by, "b:8000") << "the first request after the ejection probes b";
  EXPECT_FALSE(StatsOf(forwarder_, "b").ejected);
  // A peer that restarted (a new incarnation) is probed the same way, though its estimates,
  // reset, would make it look slower than a warmed-up peer.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Run().ok());
  directory_.Set("m", {Peer("b"), [] {
                         PeerEndpoint c = Peer("c");
                         c.generation = 7;
                         return c;
                       }()});
  r = Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->served_by, "c:8000") << "the first request after the restart probes c";
}

TEST_F(ForwarderTest, TwoPeersGoneAtOnceAreBothEjectedWhateverTheCap) {
  // Four hosts; two die at once. The 10% cap (at least one) must not keep the second one in the
  // pool: a refused connection is definitive.
  directory_.peers["m"] = {Peer("b"), Peer("c"), Peer("d"), Peer("e")};
  client_.behaviour = {{"b:8000", "refused"}, {"c:8000", "refused"}};
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<InferResponse> r = Run();
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_TRUE(StatsOf(forwarder_, "b").ejected);
  EXPECT_TRUE(StatsOf(forwarder_, "c").ejected);
  EXPECT_EQ(client_.SentTo("b:8000"), 1);
  EXPECT_EQ(client_.SentTo("c:8000"), 1);
}

TEST_F(ForwarderTest, WhenEveryPeerIsEjectedTheRequestStillGoesToOne) {
  // b and c both refuse: both are ejected (a refusal ejects whatever the cap). The next request
  // is still tried on one of them (panic) rather than refused at once.
  directory_.peers["m"] = {Peer("b"), Peer("c")};
  client_.behaviour = {{"b:8000", "refused"}, {"c:8000", "refused"}};
  EXPECT_FALSE(Run().ok());
  ASSERT_TRUE(StatsOf(forwarder_, "b").ejected);
  ASSERT_TRUE(StatsOf(forwarder_, "c").ejected);
  // Both come back (nothing told this node yet): the request is answered, not refused at once.
  client_.behaviour.clear();
  absl::StatusOr<InferResponse> r = Run();
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST_F(ForwarderTest, ResetAnd503AreRetriedWithinTheBudgetThenReported) {
  directory_.peers["m"] = {Peer("b"), Peer("c"), Peer("d")};
  client_.behaviour = {{"b:8000", "503"}, {"c:8000", "reset"}, {"d:8000", "503"}};
  absl::StatusOr<InferResponse> r = Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client_.sent.size(), 3u) << "each peer tried once";
}

// A peer of another release that does not read this node's mesh tensor form answers 415: the
// request goes on to a peer that does, and the first is passed over after that.
TEST_F(ForwarderTest, APeerThatDoesNotReadTheMeshFormIsPassedOverForOneThatDoes) {
  directory_.peers["m"] = {Peer("b"), Peer("c")};
  client_.behaviour["b:8000"] = "415";
  for (int i = 0; i < 200 && client_.SentTo("b:8000") == 0; ++i) {
    absl::StatusOr<InferResponse> r = Run();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->served_by, "c:8000");
  }
  ASSERT_GE(client_.SentTo("b:8000"), 1);
  EXPECT_GE(forwarder_.Stats().retries, 1u);
  // When no peer reads it, the client is told why.
  client_.behaviour["c:8000"] = "415";
  absl::StatusOr<InferResponse> r = Run();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("answered 415"));
}

TEST(ForwarderBudgetTest, RetriesStayWithinTheBudget) {
  // 20% of requests plus a floor of 1 per second over a 10 s window: 40 failing requests that
  // would each retry twice get at most 10 + 8 retries, not 80.
  FakeDirectory directory;
  ScriptedClient client;
  directory.peers["m"] = {Peer("b"), Peer("c"), Peer("d")};
  client.behaviour = {{"b:8000", "503"}, {"c:8000", "503"}, {"d:8000", "503"}};
  ForwarderOptions options;
  options.retry_budget = {0.2, 1.0, std::chrono::milliseconds(10000)};
  options.backoff_base = Nanos(0);
  options.outlier.consecutive_failures = 1000;
  ManualClock clock;
  Forwarder forwarder(&directory, &client, "self", 1, options, clock);
  for (int i = 0; i < 40; ++i) {
    std::promise<absl::StatusOr<InferResponse>> promise;
    ForwardCallback done = [&](absl::StatusOr<InferResponse> r) { promise.set_value(r); };
    InferRequest req = Request();
    forwarder.Route(req, "t", RouteOptions{}, done);
    EXPECT_EQ(promise.get_future().get().status().code(), absl::StatusCode::kUnavailable);
  }
  const uint64_t retries = forwarder.Stats().retries;
  EXPECT_GE(retries, 10u) << "the floor";
  EXPECT_LE(retries, 18u) << "the floor plus 20% of the requests";
  EXPECT_EQ(client.sent.size(), 40u + retries);
}

TEST_F(ForwarderTest, AHungPeersTryIsHedgedToAnotherAndTheFirstAnswerWins) {
  // b accepted the request and never answers (stopped). Only b hosts the model when the request
  // is routed; c appears while b's try is under way.
  directory_.peers["m"] = {Peer("b")};
  client_.behaviour["b:8000"] = "hang";
  Counted counted;
  ForwardCallback done = counted.Callback();
  InferRequest req = Request();
  ASSERT_EQ(forwarder_.Route(req, "t", {}, done), Forwarder::Routed::kForwarded);
  ASSERT_EQ(client_.SentTo("b:8000"), 1);
  directory_.Set("m", {Peer("b"), Peer("c")});
  // The hedge time is a multiple of b's expected time (1 ms of service, 30 ms of latency before
  // any was observed), at most 1 s: well before that, c answers.
  ASSERT_TRUE(AdvanceUntil(clock_, std::chrono::seconds(1), [&] { return counted.Calls() > 0; }))
      << "the request waited for the hung peer";
  {
    absl::MutexLock lock(&counted.mu);
    ASSERT_TRUE(counted.answer->ok()) << counted.answer->status();
    EXPECT_EQ((*counted.answer)->served_by, "c:8000");
  }
  EXPECT_EQ(forwarder_.Stats().hedges, 1u);
  EXPECT_EQ(StatsOf(forwarder_, "b").late, 1u);
  // The loser is given up: its peer is told (a CANCEL on its link), the winner's is not. The
  // answer reaches the client before the losers are cancelled, on the thread that delivered it.
  std::shared_ptr<PeerCancel> loser, winner;
  {
    absl::MutexLock lock(&client_.mu);
    ASSERT_EQ(client_.requests.size(), 2u);
    loser = client_.requests[0].cancel;
    winner = client_.requests[1].cancel;
  }
  ASSERT_NE(loser, nullptr);
  ASSERT_NE(winner, nullptr);
  for (int i = 0; i < 5000 && !loser->cancelled(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(loser->cancelled()) << "b's try was not cancelled";
  EXPECT_FALSE(winner->cancelled());
  // b wakes up and answers the cancelled try 499: the request already has its answer and gets
  // no second one, and the 499 is no failure of b's.
  EXPECT_EQ(client_.Release("499"), 1);
  EXPECT_EQ(counted.Calls(), 1);
  EXPECT_EQ(forwarder_.Stats().cancelled, 1u);
  EXPECT_EQ(StatsOf(forwarder_, "b").failures, 0u);
  // Nothing is left pending at b: the next request may go there.
  client_.behaviour.erase("b:8000");
  directory_.Set("m", {Peer("b")});
  absl::StatusOr<InferResponse> next = Run();
  ASSERT_TRUE(next.ok()) << next.status();
}

TEST_F(ForwarderTest, WithoutHedgingAHungPeerHoldsTheRequestUntilItAnswers) {
  ForwarderOptions options;
  options.hedging = false;
  Forwarder forwarder(&directory_, &client_, "self", 42, options, clock_);
  directory_.peers["m"] = {Peer("b")};
  client_.behaviour["b:8000"] = "hang";
  Counted counted;
  ForwardCallback done = counted.Callback();
  InferRequest req = Request();
  forwarder.Route(req, "t", {}, done);
  directory_.Set("m", {Peer("b"), Peer("c")});
  EXPECT_FALSE(AdvanceUntil(clock_, std::chrono::seconds(2), [&] { return counted.Calls() > 0; }));
  EXPECT_EQ(client_.SentTo("c:8000"), 0);
  EXPECT_EQ(client_.Release(), 1);
  EXPECT_EQ(counted.Calls(), 1);
}

TEST_F(ForwarderTest, APeerThatKeepsBeingLateIsEjected) {
  // Five late tries in a row eject b, as five timeouts would; its requests went on to c. (Each
  // request finds only b when it is routed, and c by the time its try is late: with both, P2C
  // would avoid b after its first hung try, which stays in flight.)
  client_.behaviour["b:8000"] = "hang";
  for (int i = 0; i < 5; ++i) {
    Counted counted;
    ForwardCallback done = counted.Callback();
    InferRequest req = Request();
    directory_.Set("m", {Peer("b")});
    forwarder_.Route(req, "t", {}, done);
    directory_.Set("m", {Peer("b"), Peer("c")});
    ASSERT_TRUE(AdvanceUntil(clock_, std::chrono::seconds(2), [&] { return counted.Calls() > 0; }));
    absl::MutexLock lock(&counted.mu);
    ASSERT_TRUE(counted.answer->ok()) << counted.answer->status();
    EXPECT_EQ((*counted.answer)->served_by, "c:8000");
  }
  ASSERT_EQ(StatsOf(forwarder_, "b").late, 5u);
  EXPECT_TRUE(StatsOf(forwarder_, "b").ejected);
  const int before = client_.SentTo("b:8000");
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Run().ok());
  EXPECT_EQ(client_.SentTo("b:8000"), before) << "an ejected peer gets nothing";
  client_.Release();
}

TEST(ForwarderHedgeTest, HedgesStayWithinTheirBudget) {
  // Every try at b is late. With a budget of 10% of requests and no floor, 100 requests get at
  // most 10 hedges; the others wait for b.
  FakeDirectory directory;
  ScriptedClient client;
  directory.peers["m"] = {Peer("b"), Peer("c")};
  client.behaviour = {{"b:8000", "hang"}, {"c:8000", "hang"}};
  ForwarderOptions options;
  options.hedge.budget = {0.1, 0.0, std::chrono::milliseconds(10000)};
  options.outlier.consecutive_failures = 1000;
  ManualClock clock;
  Forwarder forwarder(&directory, &client, "self", 1, options, clock);
  std::vector<std::unique_ptr<Counted>> requests;
  for (int i = 0; i < 100; ++i) {
    requests.push_back(std::make_unique<Counted>());
    ForwardCallback done = requests.back()->Callback();
    InferRequest req = Request();
    forwarder.Route(req, "t", RouteOptions{}, done);
  }
  AdvanceUntil(clock, std::chrono::seconds(2), [] { return false; });
  EXPECT_EQ(forwarder.Stats().hedges, 10u);
  EXPECT_EQ(client.sent.size(), 110u);
  // Every request is answered once, whichever of its tries answers first.
  client.Release();
  for (const auto& r : requests) EXPECT_EQ(r->Calls(), 1);
}

// A forwarder whose retries after a peer's 403 come after 2 to 4 ms (200 ms by default).
ForwarderOptions QuickOriginRetries() {
  ForwarderOptions options;
  options.origin_retry_after = std::chrono::milliseconds(4);
  return options;
}

TEST_F(ForwarderTest, NewMemberRefusalIsRetriedWithoutEjection) {
  Forwarder forwarder(&directory_, &client_, "self", 42, QuickOriginRetries(), clock_);
  directory_.peers["m"] = {Peer("b"), Peer("c")};
  client_.behaviour["b:8000"] = "403";
  client_.behaviour["c:8000"] = "403";
  absl::StatusOr<InferResponse> r = RouteAndWait(forwarder, clock_, Request());
  // Peers that never hear of this node: the first try and five more, then their refusal.
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client_.sent.size(), 6u);
  EXPECT_GE(client_.SentTo("b:8000"), 1);
  EXPECT_GE(client_.SentTo("c:8000"), 1);
  for (const PeerStats& p : forwarder.Stats().peers) {
    EXPECT_FALSE(p.ejected) << p.node;
    EXPECT_EQ(p.failures, 0u);
  }
}

TEST_F(ForwarderTest, TheOnlyPeerIsAskedAgainOnceItHasHeardOfThisNode) {
  // This node just joined: the one node with the model refuses it twice (403), then has heard
  // of it from the gossip and serves the request.
  Forwarder forwarder(&directory_, &client_, "self", 42, QuickOriginRetries(), clock_);
  directory_.peers["m"] = {Peer("b")};
  client_.behaviour["b:8000"] = "403*2";
  // With the clock standing still, the refusal is not followed by another try.
  auto promise = std::make_shared<std::promise<absl::StatusOr<InferResponse>>>();
  std::future<absl::StatusOr<InferResponse>> answer = promise->get_future();
  ForwardCallback done = [promise](absl::StatusOr<InferResponse> r) { promise->set_value(r); };
  InferRequest req = Request();
  const SteadyTime start = clock_.Now();
  ASSERT_EQ(forwarder.Route(req, "t", {}, done), Forwarder::Routed::kForwarded);
  EXPECT_EQ(answer.wait_for(std::chrono::milliseconds(20)), std::future_status::timeout);
  EXPECT_EQ(client_.SentTo("b:8000"), 1);
  // Less than half of origin_retry_after: still no second try.
  clock_.Advance(std::chrono::microseconds(1999));
  EXPECT_EQ(answer.wait_for(std::chrono::milliseconds(20)), std::future_status::timeout);
  EXPECT_EQ(client_.SentTo("b:8000"), 1) << "each retry waits at least half of 4 ms";
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (answer.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
    ASSERT_LT(std::chrono::steady_clock::now(), limit);
    clock_.Advance(std::chrono::microseconds(100));
  }
  absl::StatusOr<InferResponse> r = answer.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->served_by, "b:8000");
  EXPECT_EQ(client_.SentTo("b:8000"), 3);
  // Each retry waited at least half of origin_retry_after on the clock.
  EXPECT_GE(clock_.Now() - start, std::chrono::milliseconds(4));
  EXPECT_EQ(forwarder.Stats().retries, 2u);
  ASSERT_EQ(forwarder.Stats().peers.size(), 1u);
  EXPECT_EQ(forwarder.Stats().peers[0].failures, 0u);
}

TEST_F(ForwarderTest, ARefusalIsTheAnswerWhenTheDeadlineComesBeforeTheNextTry) {
  ForwarderOptions options;
  options.origin_retry_after = std::chrono::seconds(2);  // the next try: 1 to 2 s from now
  Forwarder forwarder(&directory_, &client_, "self", 42, options, clock_);
  directory_.peers["m"] = {Peer("b")};
  client_.behaviour["b:8000"] = "403";
  InferRequest req = Request();
  req.deadline = clock_.Now() + std::chrono::milliseconds(500);
  // The clock stands still: the answer comes at once, without waiting for any time to pass.
  absl::StatusOr<InferResponse> r =
      RouteAndWait(forwarder, clock_, std::move(req), {}, nullptr, Nanos(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("node b answered 403"));
  EXPECT_EQ(client_.sent.size(), 1u);
}

TEST_F(ForwarderTest, StrictestPolicyOfThePeersApplies) {
  directory_.peers["m"] = {Peer("b", "z2", DataPolicy::kMesh), Peer("c", "z2", DataPolicy::kZone)};
  RouteOptions options;
  options.local_zone = "z1";
  absl::StatusOr<InferResponse> r = Run(options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("data policy (zone)"));
  EXPECT_TRUE(client_.sent.empty());
  directory_.peers["m"].push_back(Peer("d", "z1", DataPolicy::kZone));
  r = Run(options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->served_by, "d:8000");
}

TEST_F(ForwarderTest, LocalWinsWhenIdleAndTheFreshLoadOfAResponseCounts) {
  directory_.peers["m"] = {Peer("b")};
  RouteOptions options;
  Candidate local;
  local.node = "self";
  local.local = true;
  local.service_ns = 1e6;
  options.local = local;
  Forwarder::Routed how;
  EXPECT_EQ(Run(options, &how).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(how, Forwarder::Routed::kLocal);
  // Busy here: b is idle by gossip, so the request goes there.
  options.local->queue_depth = 10;
  ASSERT_TRUE(Run(options, &how).ok());
  EXPECT_EQ(how, Forwarder::Routed::kForwarded);
  // b's response says it is far busier than gossip knew: the next request stays here.
  client_.load["b:8000"] = "40 2 1 1000 1000";
  ASSERT_TRUE(Run(options).ok());
  (void)Run(options, &how);
  EXPECT_EQ(how, Forwarder::Routed::kLocal);
  // A local-only model is never forwarded, however busy this node is.
  client_.load.clear();
  options.policy = DataPolicy::kLocalOnly;
  options.local->queue_depth = 1000;
  (void)Run(options, &how);
  EXPECT_EQ(how, Forwarder::Routed::kLocal);
}

TEST_F(ForwarderTest, HopLimitStopsASecondHop) {
  directory_.peers["m"] = {Peer("b")};
  RouteOptions options;
  options.hops = 1;
  absl::StatusOr<InferResponse> r = Run(options);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(client_.sent.empty());
}

TEST(LoadHeaderTest, Encodes) {
  EXPECT_EQ(EncodeLoadHeader(3, 1, 2, 1500, 90), "3 1 2 1500 90");
  EXPECT_EQ(EncodeLoadHeader(-1, -2, 0, 7, 8), "0 0 1 7 8")
      << "never negative, at least one instance";
}

}  // namespace
}  // namespace hivemesh::routing
