// IoThreads: a small set of network event loops, one per thread, shared by the components of a
// node that do network I/O (the HTTP server, the peer client). Each thread runs its own loop, so
// work that starts on a loop — an HTTP request read there, the request it forwards to a peer, the
// peer's answer and the response written back — stays on that one thread: no hand-off between
// threads and no lock on the way.
//
// The loops run from Create() until Stop() or destruction. The event loop itself (Boost.Asio) is
// kept out of this header; the .cc files of the components reach it through io_threads_asio.h.
//
// Ownership: shared (std::shared_ptr) by whoever creates it and the components that use it.
// The last owner must not drop its reference on one of these threads (Stop() joins them).
//
// Thread safety: CurrentLoop and NextLoop may be called from any thread. Stop and RunOn are
// control operations: call them from a thread that is not one of these I/O threads.
#pragma once

#include <functional>
#include <memory>

namespace hivemesh {

class IoThreads {
 public:
  // REQUIRES: threads >= 1.
  static std::shared_ptr<IoThreads> Create(int threads);
  ~IoThreads();
  IoThreads(const IoThreads&) = delete;
  IoThreads& operator=(const IoThreads&) = delete;

  // Number of loops (= threads).
  int size() const;
  // The loop the calling thread runs, or -1 if it runs none of these.
  int CurrentLoop() const;
  // A loop for work that arrives from outside (round robin).
  int NextLoop();
  // Runs `fn` on loop `loop`'s thread and waits until it has run. Once the loops have stopped,
  // runs it on the calling thread instead (nothing else runs then).
  // REQUIRES: not called from one of these threads.
  void RunOn(int loop, const std::function<void()>& fn);
  // Stops every loop and joins the threads; handlers still queued are never run (they are
  // destroyed with this object). Idempotent.
  // REQUIRES: not called from one of these threads.
  void Stop();
  bool stopped() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  IoThreads() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hivemesh
