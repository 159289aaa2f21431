// One node's end of a mesh hop, over the mesh link or over h2c, for bench_link_vs_h2c.py.
//
//   link_vs_h2c serve --transport link|h2c [--handler inline|worker]
//       Serves on 127.0.0.1 (a free port, printed as "port <n>") until stdin closes: the mesh
//       link is the project's HttpServer with its link upgrade, h2c the prototype H2cServer.
//       Both check the member credential of the connection (MemberCheck, as an agent does) and
//       run the same handler: it checks that the request comes from the link's member and has
//       the body it should, and answers ~100 bytes with the fields a serving node adds. With
//       `--handler worker` the answer is given on a worker thread, as a model's would be.
//   link_vs_h2c drive --transport link|h2c --address 127.0.0.1:<port> --size small|large
//                     --concurrency <n> --seconds <s> --warmup <s> --server-pid <pid>
//       Forwards requests as a forwarding node does: the project's PeerClient (mesh link) or the
//       prototype H2cClient, called on the client's I/O thread, `concurrency` requests open at
//       once (each answer sends the next). Prints one JSON line: requests per second, latency
//       percentiles, and the CPU time and voluntary context switches per request of both
//       processes over the measured seconds (from /proc/<pid>/task/*), and the requests made in
//       all (warm-up included, for counting system calls over the whole run).
//       With `--instructions <n>`, after the warm-up it counts instead: exactly n requests at that
//       concurrency, under callgrind's instrumentation (this process runs under callgrind with
//       --instr-atstart=no and dumps its counts when they are done; with `--callgrind-server`, it
//       switches the server's instrumentation on and off around them with callgrind_control).
#include <dirent.h>
#include <valgrind/callgrind.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "api/member_check.h"
#include "base/clock.h"
#include "base/rejections.h"
#include "base/strings.h"
#include "h2c/h2c_transport.h"
#include "identity/member_credential.h"
#include "identity/node_key.h"
#include "transport/http_server.h"
#include "transport/io_threads.h"
#include "transport/peer_client.h"

namespace hivemesh {
namespace {

using Steady = std::chrono::steady_clock;

// The same key pair in both processes: the serving node knows the forwarding node's public key
// as gossip would have told it.
constexpr char kSeed[] = "link-vs-h2c bench key of node-a!";  // 32 bytes
constexpr char kOrigin[] = "node-a";
constexpr char kServer[] = "node-b";
constexpr char kSmallTarget[] = "/v2/models/identity/infer";
constexpr char kLargeTarget[] = "/v2/models/image/infer";
constexpr size_t kLargeTensor = 64 * 1024;

// A KServe v2 JSON request of ~200 bytes.
const std::string& SmallBody() {
  static const std::string body =
      R"({"id":"42","inputs":[{"name":"INPUT0","shape":[16],"datatype":"FP32","data":)"
      R"([0.0,0.125,0.25,0.375,0.5,0.625,0.75,0.875,1.0,1.125,1.25,1.375,1.5,1.625,1.75,1.875]}]})";
  return body;
}
// The head of a large request (as the mesh tensor form's: names, shapes, sizes), then 64 KiB of
// tensor bytes sent from where they are.
const std::string& LargeHead() {
  static const std::string head(64, 'h');
  return head;
}
size_t ExpectedBody(std::string_view target) {
  return target == kSmallTarget ? SmallBody().size() : LargeHead().size() + kLargeTensor;
}
// ~100 bytes, as an identity model's KServe answer for a short tensor.
const std::string& Answer() {
  static const std::string answer =
      R"({"model_name":"identity","id":"42","outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]})";
  return answer;
}

std::string Flag(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return fallback;
}

// ---------------------------------------------------------------------------------------------
// serve

HttpResponse Handle(const MemberCheck& check, const HttpRequest& req) {
  HttpResponse r;
  absl::Status member = check.CheckForwarded(req, req.header("Hivemesh-Origin"));
  if (!member.ok()) {
    r.status = 403;
    r.body = std::string(member.message());
    return r;
  }
  if (req.body()->size() != ExpectedBody(req.target())) {
    r.status = 400;
    r.body = StrCat("a body of ", req.body()->size(), " bytes");
    return r;
  }
  r.body = Answer();
  r.headers.reserve(2);
  r.headers.emplace_back("Hivemesh-Served-By", kServer);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(SystemClock::Get().Now() -
                                                                        req.received())
                      .count();
  r.headers.emplace_back("Hivemesh-Load", StrCat("0 1 1 3 ", us));
  return r;
}

// One thread that answers requests, as a model's worker instance does.
class Worker {
 public:
  explicit Worker(std::shared_ptr<MemberCheck> check)
      : check_(std::move(check)), thread_([this] { Run(); }) {}
  ~Worker() {
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  void Submit(const HttpRequest& req, HttpResponder respond) {
    absl::MutexLock l(&mu_);
    queue_.push_back({&req, std::move(respond)});
  }

 private:
  struct Item {
    const HttpRequest* request;  // valid until `respond` runs
    HttpResponder respond;
  };
  void Run() {
    while (true) {
      Item item;
      {
        absl::MutexLock l(&mu_);
        auto ready = [this]()
                         ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
        mu_.Await(absl::Condition(&ready));
        if (stop_) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      item.respond(Handle(*check_, *item.request));
    }
  }
  const std::shared_ptr<MemberCheck> check_;
  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

int Serve(int argc, char** argv) {
  const std::string transport = Flag(argc, argv, "transport", "link");
  const bool on_worker = Flag(argc, argv, "handler", "inline") == "worker";
  const identity::NodeKey origin_key = identity::NodeKey::FromSeed(kSeed);
  identity::CredentialVerifier::Options verify;
  verify.self = kServer;
  auto rejections = std::make_shared<Rejections>();
  auto check = std::make_shared<MemberCheck>(
      std::make_shared<identity::CredentialVerifier>(
          verify,
          [key = origin_key.public_key()](std::string_view member) -> std::optional<std::string> {
            if (member == kOrigin) return key;
            return std::nullopt;
          }),
      rejections, UnixMillisNow);
  auto worker = on_worker ? std::make_unique<Worker>(check) : nullptr;
  HttpHandler handler = [check, w = worker.get()](const HttpRequest& req, HttpResponder respond) {
    if (w != nullptr) return w->Submit(req, std::move(respond));
    respond(Handle(*check, req));
  };
  auto authorize = [check](const HttpRequest& upgrade) { return check->AuthorizeLink(upgrade); };
  std::shared_ptr<IoThreads> io = IoThreads::Create(1);
  std::unique_ptr<HttpServer> link;
  std::unique_ptr<h2c::H2cServer> h2;
  uint16_t port = 0;
  if (transport == "link") {
    HttpServerOptions o;
    o.port = 0;
    o.rejections = rejections;
    o.authorize_link = authorize;
    absl::StatusOr<std::unique_ptr<HttpServer>> s = HttpServer::Create(o, handler, io);
    if (!s.ok()) return std::fprintf(stderr, "%s\n", s.status().ToString().c_str()), 1;
    link = *std::move(s);
    link->Start();
    port = link->port();
  } else {
    h2c::H2cServerOptions o;
    o.authorize_link = authorize;
    o.clock = &SystemClock::Get();
    absl::StatusOr<std::unique_ptr<h2c::H2cServer>> s = h2c::H2cServer::Create(o, handler, io);
    if (!s.ok()) return std::fprintf(stderr, "%s\n", s.status().ToString().c_str()), 1;
    h2 = *std::move(s);
    h2->Start();
    port = h2->port();
  }
  std::printf("port %u\n", port);
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  if (link) link->Stop();
  if (h2) h2->Stop();
  io->Stop();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// drive

// CPU time (ns) and voluntary context switches of all of a process's threads.
struct Usage {
  uint64_t cpu_ns = 0;
  uint64_t switches = 0;
};

Usage ReadUsage(const std::string& pid) {
  Usage u;
  const std::string dir = "/proc/" + pid + "/task";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return u;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream sched(dir + "/" + e->d_name + "/schedstat");
    uint64_t ns = 0;
    if (sched >> ns) u.cpu_ns += ns;
    std::ifstream status(dir + "/" + e->d_name + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.starts_with("voluntary_ctxt_switches:")) {
        u.switches += std::stoull(line.substr(std::strlen("voluntary_ctxt_switches:")));
      }
    }
  }
  closedir(d);
  return u;
}

using SendFn = std::function<void(PeerRequest, PeerCallback)>;

class Load {
 public:
  Load(SendFn send, std::string address, bool large)
      : send_(std::move(send)), address_(std::move(address)), large_(large) {
    if (large_) {
      auto bytes = std::make_shared<std::string>(kLargeTensor, '\x5a');
      tensor_ = Tensor::View("INPUT0", DataType::kUint8, {static_cast<int64_t>(kLargeTensor)},
                             bytes, *bytes);
    }
    latencies_.reserve(1 << 22);
  }

  // On the client's loop.
  void Issue() {
    if (stopping_.load(std::memory_order_relaxed) || budget_ == 0) {
      in_flight_.fetch_sub(1);
      return;
    }
    if (budget_ > 0) --budget_;
    PeerRequest r;
    r.address = address_;
    r.peer_node = kServer;
    r.target = large_ ? kLargeTarget : kSmallTarget;
    r.headers.reserve(4);
    r.headers.emplace_back("Content-Type",
                           large_ ? "application/x-hivemesh-tensors" : "application/json");
    r.headers.emplace_back("Hivemesh-Hops", "1");
    r.headers.emplace_back("Hivemesh-Origin", kOrigin);
    r.headers.emplace_back("Hivemesh-Trace", StrCat(kOrigin, "-", ++trace_));
    if (large_) {
      r.body = LargeHead();
      r.tail.push_back(tensor_);
    } else {
      r.body = SmallBody();
    }
    r.send_time_left = true;
    const Steady::time_point start = Steady::now();
    send_(std::move(r), [this, start](absl::StatusOr<PeerResponse> resp) {
      const Steady::time_point end = Steady::now();
      const bool ok = resp.ok() && resp->status == 200 && resp->body->size() == Answer().size();
      if (!ok && errors_.fetch_add(1) == 0) {
        std::fprintf(stderr, "first failure: %s\n",
                     resp.ok() ? StrCat(resp->status, " ", *resp->body).c_str()
                               : resp.status().ToString().c_str());
      }
      if (recording_.load(std::memory_order_relaxed)) {
        latencies_.push_back(static_cast<uint32_t>((end - start).count()));
      }
      completed_.fetch_add(1, std::memory_order_relaxed);
      Issue();
    });
  }

  // `budget`: requests to make in all, or -1 until StopIssuing. REQUIRES: Drained().
  void Start(int concurrency, int64_t budget = -1) {
    stopping_.store(false);
    budget_ = budget;
    in_flight_ = concurrency;
    for (int i = 0; i < concurrency; ++i) Issue();
  }
  void Record(bool on) { recording_.store(on); }
  void StopIssuing() { stopping_.store(true); }
  bool Drained() const { return in_flight_.load() == 0; }
  uint64_t completed() const { return completed_.load(); }
  uint64_t errors() const { return errors_.load(); }
  // After Drained().
  std::vector<uint32_t>& latencies() { return latencies_; }

 private:
  const SendFn send_;
  const std::string address_;
  const bool large_;
  Tensor tensor_;
  uint64_t trace_ = 0;
  int64_t budget_ = -1;  // on the loop's thread
  std::atomic<bool> recording_{false}, stopping_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<uint64_t> completed_{0}, errors_{0};
  std::vector<uint32_t> latencies_;  // ns; on the loop's thread until drained
};

int Drive(int argc, char** argv) {
  const std::string transport = Flag(argc, argv, "transport", "link");
  const std::string address = Flag(argc, argv, "address", "");
  const bool large = Flag(argc, argv, "size", "small") == "large";
  const int concurrency = std::stoi(Flag(argc, argv, "concurrency", "1"));
  const double seconds = std::stod(Flag(argc, argv, "seconds", "3"));
  const double warmup = std::stod(Flag(argc, argv, "warmup", "0.5"));
  const std::string server_pid = Flag(argc, argv, "server-pid", "");

  const identity::NodeKey key = identity::NodeKey::FromSeed(kSeed);
  CredentialFn credential = [key](std::string_view peer, std::string_view purpose) {
    return identity::MakeCredential(key, kOrigin, peer, purpose, UnixMillisNow(),
                                    identity::RandomNonce());
  };
  std::shared_ptr<IoThreads> io = IoThreads::Create(1);
  std::unique_ptr<PeerClient> link;
  std::unique_ptr<h2c::H2cClient> h2;
  SendFn send;
  if (transport == "link") {
    link = PeerClient::Create(io, credential);
    send = [c = link.get()](PeerRequest r, PeerCallback d) { c->Send(std::move(r), std::move(d)); };
  } else {
    h2 = h2c::H2cClient::Create(io, credential);
    send = [c = h2.get()](PeerRequest r, PeerCallback d) { c->Send(std::move(r), std::move(d)); };
  }
  Load load(send, address, large);
  io->RunOn(0, [&] { load.Start(concurrency); });
  const auto sleep = [](double s) {
    std::this_thread::sleep_for(std::chrono::duration<double>(s));
  };
  if (const int64_t count = std::stoll(Flag(argc, argv, "instructions", "0")); count > 0) {
    const bool server = Flag(argc, argv, "callgrind-server", "0") == "1";
    const auto drain = [&] {
      while (!load.Drained()) sleep(0.01);
    };
    sleep(warmup);
    load.StopIssuing();
    drain();
    const std::string control = StrCat("callgrind_control -i ");
    if (server && std::system(StrCat(control, "on ", server_pid, " >/dev/null").c_str()) != 0) {
      return std::fprintf(stderr, "callgrind_control failed\n"), 1;
    }
    CALLGRIND_ZERO_STATS;
    CALLGRIND_START_INSTRUMENTATION;
    io->RunOn(0, [&] { load.Start(concurrency, count); });
    drain();
    CALLGRIND_STOP_INSTRUMENTATION;
    CALLGRIND_DUMP_STATS_AT("measured");
    if (server &&
        (std::system(StrCat(control, "off ", server_pid, " >/dev/null").c_str()) != 0 ||
         std::system(StrCat("callgrind_control -d ", server_pid, " >/dev/null").c_str()) != 0)) {
      return std::fprintf(stderr, "callgrind_control failed\n"), 1;
    }
    if (link) link->Stop();
    if (h2) h2->Stop();
    io->Stop();
    std::printf("{\"transport\":\"%s\",\"requests\":%lld,\"errors\":%llu}\n", transport.c_str(),
                static_cast<long long>(count), static_cast<unsigned long long>(load.errors()));
    return load.errors() == 0 ? 0 : 2;
  }
  sleep(warmup);
  const Usage client0 = ReadUsage("self"), server0 = ReadUsage(server_pid);
  const uint64_t done0 = load.completed();
  const Steady::time_point t0 = Steady::now();
  load.Record(true);
  sleep(seconds);
  load.Record(false);
  const Usage client1 = ReadUsage("self"), server1 = ReadUsage(server_pid);
  const uint64_t done1 = load.completed();
  const double elapsed = std::chrono::duration<double>(Steady::now() - t0).count();
  load.StopIssuing();
  const Steady::time_point give_up = Steady::now() + std::chrono::seconds(30);
  while (!load.Drained() && Steady::now() < give_up) sleep(0.01);
  const bool drained = load.Drained();
  if (link) link->Stop();
  if (h2) h2->Stop();
  io->Stop();
  if (!drained) {
    std::fprintf(stderr, "requests still open 30 s after the end\n");
    return 1;
  }

  std::vector<uint32_t>& lat = load.latencies();
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    if (lat.empty()) return 0.0;
    return lat[std::min(lat.size() - 1, static_cast<size_t>(p * static_cast<double>(lat.size())))] /
           1000.0;
  };
  const double n = static_cast<double>(std::max<uint64_t>(1, done1 - done0));
  std::printf(
      "{\"transport\":\"%s\",\"size\":\"%s\",\"concurrency\":%d,\"requests\":%llu,"
      "\"errors\":%llu,\"rps\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
      "\"client_cpu_us\":%.3f,\"server_cpu_us\":%.3f,\"client_switches\":%.3f,"
      "\"server_switches\":%.3f,\"total_requests\":%llu}\n",
      transport.c_str(), large ? "large" : "small", concurrency,
      static_cast<unsigned long long>(done1 - done0),
      static_cast<unsigned long long>(load.errors()), n / elapsed, pct(0.5), pct(0.99),
      (client1.cpu_ns - client0.cpu_ns) / n / 1000.0,
      (server1.cpu_ns - server0.cpu_ns) / n / 1000.0, (client1.switches - client0.switches) / n,
      (server1.switches - server0.switches) / n, static_cast<unsigned long long>(load.completed()));
  return load.errors() == 0 ? 0 : 2;
}

}  // namespace
}  // namespace hivemesh

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "serve") return hivemesh::Serve(argc, argv);
  if (mode == "drive") return hivemesh::Drive(argc, argv);
  std::fprintf(stderr, "usage: link_vs_h2c serve|drive [flags] (see the file's head)\n");
  return 64;
}
