// The transport module (src/transport/): how requests reach a node and how nodes hand requests to
// each other. This header is its contract; docs/transport.md and docs/routing.md ("The mesh
// link") say the same for operators.
//
// What is here, bottom up:
// - io_threads.h: the node's network event loops, one per thread, shared by the server and the
//   client below (io_threads_asio.h, io_write.h and io_deadline.h are for their .cc files).
// - http_server.h: the HTTP/1.1 server every API of a node is served by (KServe REST, admin,
//   metrics, the serving end of mesh links). It knows no route: a handler given to it does.
// - peer_client.h: HTTP/1.1 requests to peers, over mesh links (the forwarding end) or pooled
//   plain connections.
// - link_head.h: the strict head parser both ends of a link read messages with (pure; fuzzed).
// This header: what a mesh link is, and the names both ends put on the wire.
//
// A mesh link is one TCP connection from a forwarding node to a serving node, opened as
// HTTP/1.1 (`GET /v2/health/live`, `Connection: Upgrade`, `Upgrade: hivemesh-link/1`, and a
// member credential when the client has one) and switched by a `101` answer. Each I/O loop of
// the forwarding node keeps at most one link to each peer address and sends every request of
// that loop to that peer over it.
//
// Framing after the switch: HTTP/1.1 messages, each framed by Content-Length only (no
// Transfer-Encoding, no folded lines, CRLF line ends, one length), each carrying a
// `Hivemesh-Stream: <n>` field (n > 0, unique among the link's open requests). Requests go out
// back to back without waiting; the serving node answers each as soon as it is ready, in any
// order, with its request's number. Link requests carry no Host. A message the parser cannot
// read closes the link: the next one could not be found.
//
// Ownership: the server owns its links (closed by Stop()); a link keeps each request it read
// alive until its answer has been written or dropped, so a handler's HttpRequest stays valid
// until it answers. On the client, each loop's table owns that loop's links; a link owns the
// calls it carries until each gets its one callback (answer, timeout, failure or retry).
//
// Thread safety: a link runs on one loop's thread; nothing of it is touched from another
// thread, except the serving end's answer to a link's only open request, which the thread that
// gives it (a model's worker) may write to the socket itself, under the link's lock.
//
// Limits (serving end): a body over max_body_bytes is answered 413 and one that does not fit
// the memory budget 503, both on their stream (the body is read and dropped, the link goes on);
// a message under way must arrive within body_timeout, answers waiting for the other side must
// be taken within it; a link with nothing open and no bytes for idle_link_timeout closes; more
// than 8 MiB of answers not taken stops the link reading requests until half are gone. Links
// count under the server's connection limits. Which upgrades become links is decided by the
// layer above (HttpServerOptions::authorize_link); the transport knows no members.
// Limits (forwarding end): an answer's head is at most 64 KiB and its body 256 MiB; each
// request keeps its own deadline on the link (a late answer is dropped, the link stays).
//
// The transport sits below api and routing, above base and tensor: it includes nothing of
// api/, routing/, serving/, membership/ or identity/. What it needs from above comes in as a
// callback (authorize_link, the request handler, the credential function).
#pragma once

#include <string_view>

namespace hivemesh {

// What `Upgrade:` asks for, and the 101 answer names. The protocol name carries its version; a
// change to the framing gets a new one.
inline constexpr std::string_view kLinkProtocol = "hivemesh-link/1";
// A message the forwarding end sends when it no longer needs the answer to one of its requests
// (a hedge won elsewhere): `CANCEL * HTTP/1.1`, the request's `Hivemesh-Stream`, and
// `Content-Length: 0`. It has no answer. The serving end marks the request cancelled: if it is
// still queued for a model it is answered 499 without being computed; otherwise its answer comes
// as usual. A CANCEL for a stream not open is ignored; one with a body closes the link.
inline constexpr std::string_view kLinkCancelMethod = "CANCEL";
// The field that numbers a request on a link, and its answer.
inline constexpr std::string_view kLinkStreamHeader = "Hivemesh-Stream";
// The same, as the peer client's header table keys it (lower case).
inline constexpr std::string_view kLinkStreamField = "hivemesh-stream";

// The field a forwarding node proves who it is with (identity/member_credential.h makes and
// checks its value), and the purposes the peer client asks a credential for: one per link, in
// its upgrade request, and one per request sent over plain HTTP. The same names as identity's
// kCredentialHeader, kPurposeLink and kPurposeRequest (a test holds them equal).
inline constexpr std::string_view kCredentialField = "Hivemesh-Credential";
inline constexpr std::string_view kCredentialForLink = "link";
inline constexpr std::string_view kCredentialForRequest = "request";

}  // namespace hivemesh
