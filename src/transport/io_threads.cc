#include "transport/io_threads.h"

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "transport/io_threads_asio.h"

namespace hivemesh {

namespace asio = boost::asio;

namespace {
// Which loop of which IoThreads the current thread runs (set once, at the thread's start).
thread_local const IoThreads::Impl* tls_owner = nullptr;
thread_local int tls_loop = -1;
}  // namespace

struct IoThreads::Impl {
  struct Loop {
    // One thread per context: the concurrency hint lets Asio drop its internal locking.
    Loop() : ioc(1), work(asio::make_work_guard(ioc)) {}
    asio::io_context ioc;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;
  };

  explicit Impl(int n) : loops(static_cast<size_t>(n)) {}

  std::vector<Loop> loops;  // fixed size: never reallocated
  std::atomic<unsigned> next{0};
  // Serializes RunOn and Stop: a loop is not stopped while RunOn waits for it. Guards no field
  // (`stopped` is atomic: stopped() reads it without the lock).
  absl::Mutex control;
  std::atomic<bool> stopped{false};
};

std::shared_ptr<IoThreads> IoThreads::Create(int threads) {
  if (threads < 1) threads = 1;
  std::shared_ptr<IoThreads> io(new IoThreads());
  io->impl_ = std::make_unique<Impl>(threads);
  Impl* impl = io->impl_.get();
  for (int i = 0; i < threads; ++i) {
    Impl::Loop& loop = impl->loops[static_cast<size_t>(i)];
    loop.thread = std::thread([impl, i, &loop] {
      tls_owner = impl;
      tls_loop = i;
      loop.ioc.run();
      tls_owner = nullptr;
      tls_loop = -1;
    });
  }
  return io;
}

IoThreads::~IoThreads() { Stop(); }

int IoThreads::size() const { return static_cast<int>(impl_->loops.size()); }

int IoThreads::CurrentLoop() const { return tls_owner == impl_.get() ? tls_loop : -1; }

int IoThreads::NextLoop() {
  return static_cast<int>(impl_->next.fetch_add(1, std::memory_order_relaxed) %
                          impl_->loops.size());
}

bool IoThreads::stopped() const { return impl_->stopped.load(); }

void IoThreads::RunOn(int loop, const std::function<void()>& fn) {
  absl::MutexLock lock(&impl_->control);
  if (impl_->stopped.load() || CurrentLoop() == loop) {
    fn();
    return;
  }
  std::promise<void> done;
  asio::post(impl_->loops[static_cast<size_t>(loop)].ioc, [&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

void IoThreads::Stop() {
  absl::MutexLock lock(&impl_->control);
  if (impl_->stopped.exchange(true)) return;
  if (CurrentLoop() >= 0) {
    std::fputs("IoThreads::Stop called on one of its own threads\n", stderr);
    std::abort();
  }
  for (Impl::Loop& loop : impl_->loops) {
    loop.work.reset();
    loop.ioc.stop();
  }
  for (Impl::Loop& loop : impl_->loops) {
    if (loop.thread.joinable()) loop.thread.join();
  }
}

asio::io_context& AsioContext(IoThreads& io, int loop) {
  return io.impl().loops[static_cast<size_t>(loop)].ioc;
}

}  // namespace hivemesh
