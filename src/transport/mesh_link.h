// The names a mesh link puts on the wire (docs/routing.md, "The mesh link"), shared by its two
// ends: the HTTP server (api/http_link.cc) and the peer client (routing/peer_link.cc). The
// protocol name carries its version; a change to the framing gets a new one.
#pragma once

#include <string_view>

namespace hivemesh {

// What `Upgrade:` asks for, and the 101 answer names.
inline constexpr std::string_view kLinkProtocol = "hivemesh-link/1";
// The field that numbers a request on a link, and its answer.
inline constexpr std::string_view kLinkStreamHeader = "Hivemesh-Stream";
// The same, as the peer client's header table keys it (lower case).
inline constexpr std::string_view kLinkStreamField = "hivemesh-stream";

}  // namespace hivemesh
