// Connection-level pass-through (docs/services.md, "Routing to services"): the bytes of a
// connection go both ways between a client and a Service's workload, whatever protocol they
// carry (HTTP/2 and gRPC, TLS the workload ends itself, a database's or a device's own protocol).
//
// - At a Service's own port, the HTTP server (HttpServerOptions::pass_through) looks at a
//   connection's first bytes: an HTTP/1.x request line is served as HTTP; anything else (the
//   HTTP/2 preface, a TLS ClientHello, other bytes) is relayed. A port declared connection-level
//   (`pass_through_all`, a Service port whose appProtocol is not http) relays every connection
//   at once, so protocols whose server speaks first work too.
// - Where the bytes go is a RelayPlan: hops tried in order until one connects. A hop is either
//   the workload itself (plain TCP on this node) or another node, asked for a tunnel to its own
//   workload: a connection like a mesh link's (TLS with both certificates checked in a secure
//   mesh, a member credential otherwise; an I/O loop's next tunnel to the same node resumes the
//   last one's TLS session) opened with `GET <target>`, `Connection: Upgrade`,
//   `Upgrade: hivemesh-tunnel/1`; a `101` switches it to raw bytes, any other answer refuses it
//   (the next hop is tried: nothing of the client's has been sent yet).
// - The serving end (HttpServerOptions::authorize_tunnel) decides which upgrade requests it
//   takes and the workload address each goes to; it connects there before it answers 101, so a
//   workload that does not listen is a 502 and the sender tries its next hop.
// - Relayed bytes are copied through a fixed buffer each way (kRelayBufferBytes), read again
//   only once written: a slow reader holds its writer back (TCP flow control end to end), and a
//   relay holds at most two buffers however many bytes pass. A side that ends its sending (EOF)
//   has its end passed on (a TCP half-close); the relay closes once both sides have ended, either
//   side fails, or nothing has passed either way for the idle timeout. A relay keeps its
//   client's place under the server's connection limits.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "base/clock.h"

namespace hivemesh {

// What `Upgrade:` asks for on a tunnel, and its 101 names.
inline constexpr std::string_view kTunnelProtocol = "hivemesh-tunnel/1";

// The bytes each direction of a relay reads at most before it writes them on.
inline constexpr size_t kRelayBufferBytes = 32 * 1024;

struct RelayHop {
  std::string address;  // ip:port
  // Empty: `address` is the workload (plain TCP). Otherwise the member that serves `address`, a
  // hivemesh node asked for a tunnel to `target`; over TLS its certificate must name it.
  std::string peer_node;
  std::string target;      // the tunnel request's path
  std::string credential;  // a Hivemesh-Credential value for the request; empty: none
};

struct RelayPlan {
  std::vector<RelayHop> hops;  // tried in order until one connects
  // Told how each hop tried went (OK: it connected, and the relay starts) and how long it took;
  // on the connection's I/O thread. May be null.
  std::function<void(const RelayHop& hop, const absl::Status& result, Nanos took)> on_attempt;
  // Told once when the connection ends (after a relay, or after no hop connected), with why:
  // OK when both sides ended their sending. May be null.
  std::function<void(const absl::Status& end)> on_end;
};

// A request streamed to another HTTP/1.1 server (HttpServerOptions::forward): its body and its
// answer's go through as they come, in bounded buffers, whatever their size (an upload, a
// download, server-sent events).
// - The server asks at the request's head; with a plan, it reaches the first hop that connects
//   (an idle connection kept from an earlier exchange with that hop first, if one is still
//   open), writes `head` and the body's framing (Content-Length, or chunked as the client sent
//   it), streams the body as it is read (the request's limits and checks stay), and reads the
//   answer with a parser of its own: its status line, the fields `keep_field` keeps,
//   `Hivemesh-Served-By` with the hop's name, and its body, re-framed for the client
//   (Content-Length when known, else chunked).
// - Nothing sent yet (no hop connected, or a kept connection that failed before any byte of the
//   answer, for a request without a body): the request is read whole and handled as usual (the
//   handler holds it, retries it, says why). Otherwise a failure before the answer's head is a
//   502; after it, the client's connection closes.
// - The answer's head must come within `timeout` of the request's; then no more than
//   body_timeout may pass without a byte either way.
// - An answer that ends before the request's body has been read closes the client's connection
//   after it. Connections to the hops are kept (at most 64 idle per hop, 256 per I/O loop, 30 s
//   each) when both sides allow it and nothing is under way on them.
struct ForwardPlan {
  RelayPlan route;  // the hops, in order; route.on_attempt hears how each dial went
  // The request line and header fields to send, each line ending in CRLF, without the framing
  // fields and without the blank line.
  std::string head;
  std::vector<std::string> served_by;  // per hop: the answer's Hivemesh-Served-By
  // Which of the answer's fields go back to the client (lower-case names); the framing and the
  // connection's own are never passed.
  std::function<bool(std::string_view lower_name)> keep_field;
  std::chrono::milliseconds timeout{30000};
  // Told once per exchange that reached a hop: the hop's index, a transport failure (OK if the
  // answer came), the answer's status, and how long the answer's head took.
  std::function<void(size_t hop, const absl::Status& transport, int status, Nanos took)> on_done;
};

// What a connection's first bytes are, for a server that relays what is not HTTP/1.x.
enum class FirstBytes {
  kHttp1,     // a request line starts: a method (upper-case letters) and a space
  kOther,     // anything else: the HTTP/2 preface ("PRI * ..."), a TLS record, other bytes
  kNeedMore,  // too few bytes to tell (a method's first letters)
};
FirstBytes ClassifyFirstBytes(std::string_view bytes);

}  // namespace hivemesh
