// The Boost.Asio side of IoThreads, for the .cc files of components that run on it. Include it
// from .cc files only: public headers stay free of Asio.
#pragma once

#include <boost/asio/io_context.hpp>

#include "transport/io_threads.h"

namespace hivemesh {

// The io_context of loop `loop` (0 <= loop < io.size()). Exactly one thread runs it, so handlers
// of one loop never run concurrently and need no strand.
boost::asio::io_context& AsioContext(IoThreads& io, int loop);

}  // namespace hivemesh
